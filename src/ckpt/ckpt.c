/* libgridrun's checkpoints, gr_ckpt_* (gridrun.h, doc/checkpoints.md).
 *
 * This file holds the collective part: agreeing on what a step holds, the
 * commit (every rank's file fsynced, the step directory renamed into
 * place, the index written last, old steps pruned), async saves, partner
 * copies, and loading the newest step that verifies everywhere, with
 * resharding.  The files themselves (records, index, writing an HDF5
 * file's metadata and a rank's file, verifying and reading their bytes)
 * are ckptfile.c's; the shared layout's MPI-IO writes are here, because
 * they are MPI.  Loads read no HDF5: the datasets are contiguous, at the
 * offsets the step record gives.
 *
 * The ranks talk through a world of their own (src/coll/world.h): MPI, or
 * TCP in a program started without MPI, where the shared layout (MPI-IO)
 * is not available.  A failed exchange there means a rank is gone or the
 * ranks called out of step; as with MPI's default error handler, the
 * process then ends, saying why (lost()), rather than go on disagreeing
 * about what is on disk.
 *
 * Every HDF5 call holds gr_ckf_lock(): HDF5 is not thread-safe, and the
 * async writer thread uses it too.  The writer thread never talks to the
 * other ranks. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>
#include <hdf5.h>

#include "src/common/chaos.h"
#include "src/common/fs.h"
#include "src/common/grow.h"
#include "src/common/gtime.h"
#include "src/common/hash.h"
#include "src/common/log.h"
#include "src/lib/lib.h"
#include "ckptfile.h"

_Static_assert ((int)GR_F32 == GR_CKF_F32 && (int)GR_F64 == GR_CKF_F64
                    && (int)GR_I32 == GR_CKF_I32 && (int)GR_I64 == GR_CKF_I64
                    && (int)GR_F16 == GR_CKF_F16 && (int)GR_BF16 == GR_CKF_BF16,
                "gr_dtype_t and ckptfile's types differ");
_Static_assert ((int)GR_CKPT_PER_RANK == GR_CKF_PER_RANK
                    && (int)GR_CKPT_SHARED == GR_CKF_SHARED
                    && GR_CKPT_REPLICATED == GR_CKF_REPLICATED
                    && GR_CKPT_SHARDED == GR_CKF_SHARDED
                    && GR_CKPT_MAX_DIMS == GR_CKF_MAX_DIMS,
                "gridrun.h's checkpoint constants and ckptfile's differ");

#define XFER_CHUNK ((size_t)8 << 20)    /* bytes per message of a file copy */
#define MPI_CHUNK ((uint64_t)1 << 30)   /* bytes per MPI-IO write */
#define TEXT_MAX 1024

/* An array of the step being described. */
struct arr {
    char *name;
    int type, layout, ndims;
    uint64_t dims[GR_CKF_MAX_DIMS];
    const void *data;
    uint64_t bytes;                   /* of this rank's part */
};

/* An array the next load fills (gr_ckpt_target). */
struct target {
    char *name;
    void *data;
    size_t bytes;
    uint64_t got;                     /* bytes of this rank's part copied while
                                         verifying the step being tried */
};

/* A save from its start to its commit. */
struct pending {
    gr_ckf_step_t *rec;               /* arrays and attributes; files at commit */
    char tmpdir[PATH_MAX];
    const void **data;                /* per array: what this rank writes */
    int rank;
    pthread_t thread;
    bool threaded;                    /* the writer thread runs or has to be joined */
    double t0;
    int rc, err;                      /* the writer's outcome */
    char text[TEXT_MAX];
    gr_ckf_file_t file;               /* this rank's file (per-rank layout), or the
                                         shared file (rank 0) */
};

struct gr_ckpt {
    char *dir;
    int layout, keep;
    bool async;
    char *pdir;                       /* this rank's partner directory, or NULL */
    gr_world_t *world;
    int rank, size;
    int partner;                      /* who keeps my copy; -1: none */
    int *from;                        /* whose copies I keep */
    int nfrom;
    /* The step being described. */
    bool begun;
    int64_t step;
    struct arr *arrs;
    size_t narrs, caparrs;
    gr_ckf_attr_t *attrs;
    size_t nattrs, capattrs;
    /* Async saves. */
    struct pending *pend;
    unsigned char *stage;             /* kept between saves: no page faults */
    size_t stage_cap;
    int late_err;                     /* an async save that failed when a later */
    char late_text[TEXT_MAX];         /* save collected it, for gr_ckpt_wait */
    /* Rank 0: the committed records, oldest first. */
    gr_ckf_step_t **idx;
    size_t nidx;
    /* The arrays the next load fills. */
    struct target *tgts;
    size_t ntgts, captgts;
    /* The loaded step. */
    gr_ckf_step_t *loaded;
    gr_ckf_reader_t **readers;        /* per file: open (mapped) since this rank
                                         verified it, or since a read needed it */
    char *report;
};

/* ---- Helpers ----------------------------------------------------------- */

static double now (clockid_t clk)
{
    struct timespec ts;
    clock_gettime (clk, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* gr__fail with the function's name and this rank, for failures that can
 * happen on one rank alone. */
__attribute__ ((format (printf, 4, 5)))
static int rfail (const gr_ckpt_t *c, const char *fn, int err, const char *fmt, ...)
{
    char msg[TEXT_MAX];
    va_list ap;

    va_start (ap, fmt);
    vsnprintf (msg, sizeof (msg), fmt, ap);
    va_end (ap);
    return gr__fail (err, "%s: rank %d: %s", fn, c->rank, msg);
}

/* A world operation failed: see the top of the file. */
__attribute__ ((noreturn)) static void lost (const gr_ckpt_t *c, const gr_error_t *e)
{
    GR_ERROR ("checkpoints: rank %d lost touch with the other ranks: %s; exiting", c->rank,
              e->text);
    fflush (NULL);
    _exit (1);
}

/* One world operation, gr_world_OP (c->world, ARGS..., &err), ending the
 * process on failure. */
#define WORLD(c, op, ...)                                                                \
    do {                                                                                 \
        gr_error_t w_err_;                                                               \
        if (gr_world_##op ((c)->world, __VA_ARGS__, &w_err_) < 0)                        \
            lost ((c), &w_err_);                                                         \
    } while (0)

/* The outcome of a collective step: when any rank failed (rc < 0, with
 * its gr_last_error and errno), every rank returns -1 with the lowest
 * failing rank's text and errno. */
static int agree (gr_ckpt_t *c, int rc)
{
    struct {
        int err;
        char text[TEXT_MAX];
    } m;
    int mine = rc < 0 ? c->rank : INT_MAX, first = INT_MAX;

    memset (&m, 0, sizeof (m));
    if (rc < 0) {
        m.err = errno ? errno : EIO;
        snprintf (m.text, sizeof (m.text), "%s", gr_last_error ());
    }
    WORLD (c, allreduce_int, &mine, &first, 1, GR_MIN);
    if (first == INT_MAX)
        return 0;
    WORLD (c, bcast, &m, sizeof (m), first);
    return gr__fail (m.err, "%s", m.text);
}

static int allsum (gr_ckpt_t *c, int v)
{
    int sum = 0;
    WORLD (c, allreduce_int, &v, &sum, 1, GR_SUM);
    return sum;
}

/* Broadcast rank 0's malloc'd buffer of *lenp bytes (NULL: none) to every
 * rank; the others get a malloc'd copy (with a NUL after it) or NULL.
 * Returns -1 only when out of memory somewhere (agreed). */
static int bcast_buf (gr_ckpt_t *c, char **s, uint64_t *lenp)
{
    uint64_t len = c->rank == 0 && *s ? *lenp + 1 : 0;
    int rc = 0;

    WORLD (c, bcast, &len, sizeof (len), 0);
    if (c->rank != 0) {
        *s = NULL;
        if (len && !(*s = malloc (len)))
            rc = rfail (c, "gr_ckpt", ENOMEM, "out of memory");
    }
    if (agree (c, rc) < 0) {
        if (c->rank != 0)
            *s = NULL;
        return -1;
    }
    if (len)
        WORLD (c, bcast, *s, len, 0);
    *lenp = len ? len - 1 : 0;
    return 0;
}

/* The same for a string. */
static int bcast_str (gr_ckpt_t *c, char **s)
{
    uint64_t len = c->rank == 0 && *s ? strlen (*s) : 0;
    return bcast_buf (c, s, &len);
}

/* Rank 0 gets every rank's text, "; "-joined in rank order, empty ones
 * left out (malloc'd, never NULL unless out of memory). */
static char *gather_text (gr_ckpt_t *c, const char *mine)
{
    uint64_t len = strlen (mine), *lens = NULL;
    size_t *sizes = NULL, total = 0, off = 0;
    char *all = NULL, *out = NULL;
    int nomem;

    nomem = c->rank == 0 && (!(lens = calloc ((size_t)c->size, sizeof (*lens))) ||
                             !(sizes = calloc ((size_t)c->size, sizeof (*sizes))));
    if (allsum (c, nomem) > 0)
        goto out;
    WORLD (c, gather, &len, sizeof (len), lens, 0);
    for (int r = 0; c->rank == 0 && r < c->size; r++)
        total += sizes[r] = (size_t)lens[r];
    nomem = c->rank == 0 && !(all = malloc (total + 1));
    if (allsum (c, nomem) > 0)
        goto out;
    WORLD (c, gatherv, mine, (size_t)len, all, sizes, 0);
    if (c->rank == 0 && (out = malloc (total + 2 * (size_t)c->size + 1))) {
        char *o = out;
        for (int r = 0; r < c->size; off += sizes[r], r++) {
            if (!sizes[r])
                continue;
            if (o != out) {
                memcpy (o, "; ", 2);
                o += 2;
            }
            memcpy (o, all + off, sizes[r]);
            o += sizes[r];
        }
        *o = '\0';
    }
out:
    free (all);
    free (lens);
    free (sizes);
    return out;
}

/* Append "; "-separated text to a malloc'd string. */
__attribute__ ((format (printf, 2, 3)))
static void str_add (char **s, const char *fmt, ...)
{
    char *piece = NULL, *n;
    va_list ap;

    va_start (ap, fmt);
    int len = vasprintf (&piece, fmt, ap);
    va_end (ap);
    if (len < 0)
        return;
    if (!*s) {
        *s = piece;
        return;
    }
    if (asprintf (&n, "%s; %s", *s, piece) >= 0) {
        free (*s);
        *s = n;
    }
    free (piece);
}

/* The partner directory template with %r (rank), %h (host) and %%
 * expanded. */
static char *expand_pdir (const char *tmpl, int rank)
{
    char host[256] = "localhost", out[PATH_MAX];
    size_t o = 0;

    if (gethostname (host, sizeof (host)) < 0)
        strcpy (host, "localhost");
    host[sizeof (host) - 1] = '\0';
    for (const char *p = tmpl; *p && o < sizeof (out) - 1; p++) {
        int n = 0;
        if (p[0] == '%' && p[1] == 'r')
            n = snprintf (out + o, sizeof (out) - o, "%d", rank);
        else if (p[0] == '%' && p[1] == 'h')
            n = snprintf (out + o, sizeof (out) - o, "%s", host);
        else if (p[0] == '%' && p[1] == '%')
            n = snprintf (out + o, sizeof (out) - o, "%%");
        else {
            out[o++] = *p;
            continue;
        }
        o += (size_t)n;
        p++;
    }
    if (o >= sizeof (out) - 1) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    out[o] = '\0';
    return strdup (out);
}

/* Partners: each rank's copy goes to a rank in another rack if there is
 * more than one, else on another node, else (one node) to rank + 1.  The
 * ranks sorted by (rack, node, rank), shifted by the largest domain's
 * size, spread the copies evenly when no domain holds half the ranks. */
static int by_domain (const void *a, const void *b, void *arg)
{
    const int *dom = arg;
    int x = *(const int *)a, y = *(const int *)b;
    if (dom[x] != dom[y])
        return dom[x] < dom[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int choose_partners (gr_ckpt_t *c, const char **level)
{
    const int *node = gr__rank_node (), *rack = gr__rank_rack ();
    int n = c->size, *order = NULL, *pos = NULL, *partner = NULL, *count = NULL;
    const int *dom = NULL;
    int biggest = 0;

    *level = "none";
    c->partner = -1;
    if (n < 2)
        return 0;
    for (int r = 1; r < n && !dom; r++)
        if (rack && rack[r] != rack[0])
            dom = rack, *level = "rack";
    for (int r = 1; r < n && !dom; r++)
        if (node && node[r] != node[0])
            dom = node, *level = "node";
    if (!(partner = malloc ((size_t)n * sizeof (int))))
        goto nomem;
    if (!dom) {
        for (int r = 0; r < n; r++)
            partner[r] = (r + 1) % n;
    } else {
        if (!(order = malloc ((size_t)n * sizeof (int)))
            || !(pos = malloc ((size_t)n * sizeof (int)))
            || !(count = calloc ((size_t)n, sizeof (int))))
            goto nomem;
        for (int r = 0; r < n; r++) {
            order[r] = r;
            if (dom[r] >= 0 && dom[r] < n && ++count[dom[r]] > biggest)
                biggest = count[dom[r]];
        }
        qsort_r (order, (size_t)n, sizeof (int), by_domain, (void *)dom);
        for (int i = 0; i < n; i++)
            pos[order[i]] = i;
        for (int r = 0; r < n; r++) {
            int i = (pos[r] + biggest) % n;
            /* Walk on to the first rank of another domain. */
            for (int k = 0; k < n && dom[order[i]] == dom[r]; k++)
                i = (i + 1) % n;
            partner[r] = order[i];
        }
    }
    c->partner = partner[c->rank];
    for (int r = 0; r < n; r++)
        if (partner[r] == c->rank)
            c->nfrom++;
    if (c->nfrom && !(c->from = malloc ((size_t)c->nfrom * sizeof (int))))
        goto nomem;
    c->nfrom = 0;
    for (int r = 0; r < n; r++)
        if (partner[r] == c->rank)
            c->from[c->nfrom++] = r;
    free (order);
    free (pos);
    free (count);
    free (partner);
    return 0;
nomem:
    free (order);
    free (pos);
    free (count);
    free (partner);
    return rfail (c, "gr_ckpt_open", ENOMEM, "out of memory");
}

static void free_attrs (gr_ckf_attr_t *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free (a[i].name);
        free (a[i].str);
    }
}

static int find_target (const gr_ckpt_t *c, const char *name)
{
    for (size_t i = 0; i < c->ntgts; i++)
        if (strcmp (c->tgts[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void clear_targets (gr_ckpt_t *c)
{
    for (size_t i = 0; i < c->ntgts; i++)
        free (c->tgts[i].name);
    c->ntgts = 0;
}

static void clear_desc (gr_ckpt_t *c)
{
    int saved = errno;
    for (size_t i = 0; i < c->narrs; i++)
        free (c->arrs[i].name);
    free_attrs (c->attrs, c->nattrs);
    c->narrs = c->nattrs = 0;
    c->begun = false;
    errno = saved;
}

static void pending_free (struct pending *p)
{
    if (!p)
        return;
    gr_ckf_step_free (p->rec);
    gr_ckf_file_clear (&p->file);
    free (p->data);
    free (p);
}

/* ---- Open ---------------------------------------------------------------- */

/* Rank 0: what the directory holds, and old leftovers cleared. */
static int open_dir (gr_ckpt_t *c)
{
    gr_error_t err;
    gr_ckf_catalog_t *cat;
    DIR *d;
    struct dirent *de;

    if (gr_mkdir_p (c->dir, 0700, &err) < 0)
        return rfail (c, "gr_ckpt_open", errno, "%s", err.text);
    /* Steps a crash left half written (.tmp) or half removed (.del). */
    if ((d = opendir (c->dir))) {
        while ((de = readdir (d))) {
            size_t len = strlen (de->d_name);
            if (strncmp (de->d_name, ".step-", 6) != 0 || len < 10
                || (strcmp (de->d_name + len - 4, ".tmp") != 0
                    && strcmp (de->d_name + len - 4, ".del") != 0))
                continue;
            char p[PATH_MAX];
            if (snprintf (p, sizeof (p), "%s/%s", c->dir, de->d_name) < (int)sizeof (p)) {
                GR_DEBUG ("checkpoints: removing the leftover %s", p);
                gr_ckf_remove_dir (p);
            }
        }
        closedir (d);
    }
    if (!(cat = gr_ckf_catalog_load (c->dir, &err)))
        return rfail (c, "gr_ckpt_open", errno, "%s", err.text);
    if (!cat->have_index && cat->n)
        GR_WARN ("checkpoints: %s; the next save rebuilds it from the steps' meta files",
                 cat->index_problem);
    for (size_t i = cat->n; i-- > 0;) {
        gr_ckf_entry_t *e = &cat->entries[i];
        if (!e->rec || !e->has_dir)
            continue;
        gr_ckf_step_t **n = realloc (c->idx, (c->nidx + 1) * sizeof (*n));
        if (!n) {
            gr_ckf_catalog_free (cat);
            return rfail (c, "gr_ckpt_open", ENOMEM, "out of memory");
        }
        c->idx = n;
        c->idx[c->nidx++] = e->rec;
        e->rec = NULL;
    }
    gr_ckf_catalog_free (cat);
    return 0;
}

static int open_partner_dir (gr_ckpt_t *c, const char *tmpl)
{
    gr_error_t err;
    char a[PATH_MAX], b[PATH_MAX];

    if (!tmpl)
        return 0;
    if (!*tmpl)
        return rfail (c, "gr_ckpt_open", EINVAL, "the partner directory is empty");
    if (!(c->pdir = expand_pdir (tmpl, c->rank)))
        return rfail (c, "gr_ckpt_open", errno, "partner directory '%s': %s", tmpl,
                      strerror (errno));
    if (gr_mkdir_p (c->pdir, 0700, &err) < 0)
        return rfail (c, "gr_ckpt_open", errno, "partner directory: %s", err.text);
    if (realpath (c->pdir, a) && realpath (c->dir, b) && strcmp (a, b) == 0)
        return rfail (c, "gr_ckpt_open", EINVAL, "the partner directory '%s' is the "
                      "checkpoint directory; give a node-local one (like /tmp/ckpt-%%r)",
                      c->pdir);
    return 0;
}

gr_ckpt_t *gr_ckpt_open (const char *dir, const gr_ckpt_opts_t *opts)
{
    const char *fn = "gr_ckpt_open";
    gr_ckpt_opts_t o = {.layout = GR_CKPT_PER_RANK, .keep = 3};
    const char *ptmpl, *env = getenv ("GRIDRUN_CKPT_PARTNER_DIR"), *level = "none";
    gr_error_t werr;
    gr_ckpt_t *c;
    int rc = 0;

    if (!gr__initialized ()) {
        gr__fail (EPROTO, "%s: call gr_init first", fn);
        return NULL;
    }
    if (!(c = calloc (1, sizeof (*c)))) {
        gr__fail (ENOMEM, "%s: out of memory", fn);
        return NULL;
    }
    c->partner = -1;
    if (!(c->world = gr_world_dup (gr__world (), &werr))) {
        free (c);
        gr__fail (errno, "%s: %s", fn, werr.text);
        return NULL;
    }
    c->rank = gr_world_rank (c->world);
    c->size = gr_world_size (c->world);
    if (opts)
        o = *opts;
    ptmpl = o.partner_dir ? o.partner_dir : env && *env ? env : NULL;
    if (!dir || !*dir)
        rc = gr__fail (EINVAL, "%s: no directory given", fn);
    else if (o.layout != GR_CKPT_PER_RANK && o.layout != GR_CKPT_SHARED)
        rc = gr__fail (EINVAL, "%s: unknown layout %d", fn, (int)o.layout);
    else if (o.keep < 0)
        rc = gr__fail (EINVAL, "%s: keep is %d; give 0 (keep every step) or more", fn, o.keep);
    else if (o.async && o.layout == GR_CKPT_SHARED)
        rc = gr__fail (ENOTSUP, "%s: async saves need the per-rank layout (the shared "
                       "layout writes with collective MPI-IO, which the background "
                       "writer does not call)", fn);
    else if (o.partner_dir && o.layout == GR_CKPT_SHARED)
        rc = gr__fail (ENOTSUP, "%s: partner copies need the per-rank layout (the "
                       "shared layout has no per-rank files to copy)", fn);
    else if (o.layout == GR_CKPT_SHARED && gr_world_netof (c->world))
        rc = gr__fail (ENOTSUP, "%s: the shared layout writes with MPI-IO, and this "
                       "program runs without MPI (RANK, WORLD_SIZE and MASTER_ADDR over "
                       "TCP); use the per-rank layout (GR_CKPT_PER_RANK)", fn);
    else if (!(c->dir = strdup (dir)))
        rc = gr__fail (ENOMEM, "%s: out of memory", fn);
    if (rc == 0 && o.layout == GR_CKPT_SHARED && ptmpl) {
        if (c->rank == 0)
            GR_WARN ("checkpoints: GRIDRUN_CKPT_PARTNER_DIR is ignored: the shared layout "
                     "keeps no partner copies");
        ptmpl = NULL;
    }
    c->layout = o.layout;
    c->keep = o.keep;
    c->async = o.async != 0;
    if (agree (c, rc) < 0)
        goto error;
    if (c->rank == 0)
        rc = open_dir (c);
    if (agree (c, rc) < 0)
        goto error;
    rc = open_partner_dir (c, ptmpl);
    if (agree (c, rc) < 0)
        goto error;
    /* Partner copies are all or nothing: every rank sends one. */
    if (allsum (c, c->pdir != NULL) % c->size != 0) {
        gr__fail (EINVAL, "%s: a partner directory is set on some ranks only; give it "
                  "(or GRIDRUN_CKPT_PARTNER_DIR) on every rank or on none", fn);
        goto error;
    }
    if (c->pdir && agree (c, choose_partners (c, &level)) < 0)
        goto error;
    if (c->pdir && c->rank == 0) {
        if (strcmp (level, "none") == 0 && c->size > 1)
            GR_WARN ("checkpoints: all %d ranks are on one node: rank r's partner copy "
                     "goes to rank (r+1)%%%d, which survives a lost or damaged file, "
                     "not a lost node", c->size, c->size);
        else if (c->size < 2)
            GR_WARN ("checkpoints: one rank: no partner copies");
        else
            GR_INFO ("checkpoints: partner copies go to a rank in another %s", level);
    }
    gr_ckf_lock ();
    H5open ();
    gr_ckf_h5_quiet ();
    gr_ckf_unlock ();
    return c;
error:;
    int e = errno;
    gr_ckpt_close (c);
    errno = e;
    return NULL;
}

/* ---- Describing a step ----------------------------------------------------- */

int gr_ckpt_begin (gr_ckpt_t *c, int64_t step)
{
    if (!c)
        return gr__fail (EINVAL, "gr_ckpt_begin: the checkpoint is NULL");
    if (step < 0)
        return gr__fail (EINVAL, "gr_ckpt_begin: step %" PRId64 " is negative", step);
    clear_desc (c);
    c->begun = true;
    c->step = step;
    return 0;
}

int gr_ckpt_add (gr_ckpt_t *c, const char *name, gr_dtype_t type, int ndims,
                 const uint64_t *dims, const void *data, int layout)
{
    const char *fn = "gr_ckpt_add", *why;
    struct arr a = {.type = (int)type, .layout = layout, .ndims = ndims, .data = data};

    if (!c)
        return gr__fail (EINVAL, "%s: the checkpoint is NULL", fn);
    if (!c->begun)
        return gr__fail (EPROTO, "%s: call gr_ckpt_begin first", fn);
    if ((why = gr_ckf_name_problem (name)))
        return gr__fail (EINVAL, "%s: bad array name '%s': %s", fn, name ? name : "(null)",
                         why);
    for (size_t i = 0; i < c->narrs; i++)
        if (strcmp (c->arrs[i].name, name) == 0)
            return gr__fail (EINVAL, "%s: array '%s' is already in step %" PRId64, fn, name,
                             c->step);
    if (gr_ckf_type_size ((int)type) == 0)
        return gr__fail (EINVAL, "%s: array '%s': unknown type %d", fn, name, (int)type);
    if (layout != GR_CKPT_REPLICATED && layout != GR_CKPT_SHARDED)
        return gr__fail (EINVAL, "%s: array '%s': layout %d is neither GR_CKPT_REPLICATED "
                         "nor GR_CKPT_SHARDED", fn, name, layout);
    if (ndims < 0 || ndims > GR_CKPT_MAX_DIMS || (ndims > 0 && !dims))
        return gr__fail (EINVAL, "%s: array '%s': %d dimensions (0 to %d, with dims)", fn,
                         name, ndims, GR_CKPT_MAX_DIMS);
    if (layout == GR_CKPT_SHARDED && ndims < 1)
        return gr__fail (EINVAL, "%s: array '%s': a sharded array needs a dimension to "
                         "split", fn, name);
    a.bytes = gr_ckf_type_size ((int)type);
    for (int d = 0; d < ndims; d++) {
        a.dims[d] = dims[d];
        if (dims[d] && a.bytes > ((uint64_t)1 << 62) / dims[d])
            return gr__fail (EINVAL, "%s: array '%s' is too large", fn, name);
        a.bytes *= dims[d];
    }
    if (a.bytes > 0 && !data)
        return gr__fail (EINVAL, "%s: array '%s': data is NULL", fn, name);
    struct arr *arrs = gr_grow (c->arrs, &c->caparrs, c->narrs, sizeof (*arrs), 16);
    if (!arrs)
        return gr__fail (ENOMEM, "%s: out of memory", fn);
    c->arrs = arrs;
    if (!(a.name = strdup (name)))
        return gr__fail (ENOMEM, "%s: out of memory", fn);
    c->arrs[c->narrs++] = a;
    return 0;
}

int gr_ckpt_target (gr_ckpt_t *c, const char *name, void *data, size_t bytes)
{
    const char *fn = "gr_ckpt_target", *why;

    if (!c)
        return gr__fail (EINVAL, "%s: the checkpoint is NULL", fn);
    if ((why = gr_ckf_name_problem (name)))
        return gr__fail (EINVAL, "%s: bad array name '%s': %s", fn, name ? name : "(null)",
                         why);
    if (bytes > 0 && !data)
        return gr__fail (EINVAL, "%s: array '%s': data is NULL", fn, name);
    if (find_target (c, name) >= 0)
        return gr__fail (EINVAL, "%s: array '%s' is already a target of the next load", fn,
                         name);
    struct target *tgts = gr_grow (c->tgts, &c->captgts, c->ntgts, sizeof (*tgts), 16);
    if (!tgts)
        return gr__fail (ENOMEM, "%s: out of memory", fn);
    c->tgts = tgts;
    struct target t = {.name = strdup (name), .data = data, .bytes = bytes};
    if (!t.name)
        return gr__fail (ENOMEM, "%s: out of memory", fn);
    c->tgts[c->ntgts++] = t;
    return 0;
}

static int add_attr (gr_ckpt_t *c, const char *fn, gr_ckf_attr_t *a)
{
    const char *why;

    if (!c)
        return gr__fail (EINVAL, "%s: the checkpoint is NULL", fn);
    if (!c->begun)
        return gr__fail (EPROTO, "%s: call gr_ckpt_begin first", fn);
    if ((why = gr_ckf_name_problem (a->name)))
        return gr__fail (EINVAL, "%s: bad attribute name '%s': %s", fn,
                         a->name ? a->name : "(null)", why);
    if (strncmp (a->name, "gridrun_", 8) == 0)
        return gr__fail (EINVAL, "%s: attribute '%s': names starting with gridrun_ are "
                         "gridrun's own", fn, a->name);
    if (a->kind == GR_CKF_ATTR_STR && (!a->str || strlen (a->str) > GR_CKF_STR_MAX))
        return gr__fail (EINVAL, "%s: attribute '%s': %s", fn, a->name,
                         a->str ? "longer than 64 KiB" : "the value is NULL");
    for (size_t i = 0; i < c->nattrs; i++)
        if (strcmp (c->attrs[i].name, a->name) == 0)
            return gr__fail (EINVAL, "%s: attribute '%s' is already in step %" PRId64, fn,
                             a->name, c->step);
    gr_ckf_attr_t *attrs = gr_grow (c->attrs, &c->capattrs, c->nattrs, sizeof (*attrs),
                                    16);
    if (!attrs)
        return gr__fail (ENOMEM, "%s: out of memory", fn);
    c->attrs = attrs;
    gr_ckf_attr_t copy = *a;
    copy.str = NULL;
    if (!(copy.name = strdup (a->name))
        || (a->kind == GR_CKF_ATTR_STR && !(copy.str = strdup (a->str)))) {
        free (copy.name);
        return gr__fail (ENOMEM, "%s: out of memory", fn);
    }
    c->attrs[c->nattrs++] = copy;
    return 0;
}

int gr_ckpt_attr_i64 (gr_ckpt_t *c, const char *name, int64_t value)
{
    gr_ckf_attr_t a = {.name = (char *)name, .kind = GR_CKF_ATTR_I64, .i64 = value};
    return add_attr (c, "gr_ckpt_attr_i64", &a);
}

int gr_ckpt_attr_f64 (gr_ckpt_t *c, const char *name, double value)
{
    gr_ckf_attr_t a = {.name = (char *)name, .kind = GR_CKF_ATTR_F64, .f64 = value};
    return add_attr (c, "gr_ckpt_attr_f64", &a);
}

int gr_ckpt_attr_str (gr_ckpt_t *c, const char *name, const char *value)
{
    gr_ckf_attr_t a = {.name = (char *)name, .kind = GR_CKF_ATTR_STR, .str = (char *)value};
    return add_attr (c, "gr_ckpt_attr_str", &a);
}

/* The first rank whose h differs from rank 0's, or 0 when every rank
 * gave the same; -1 (agreed) when out of memory somewhere. */
static int first_differing (gr_ckpt_t *c, const char *fn, uint64_t h)
{
    uint64_t *hs = malloc ((size_t)c->size * sizeof (*hs));
    int r;

    if (agree (c, hs ? 0 : rfail (c, fn, ENOMEM, "out of memory")) < 0) {
        free (hs);
        return -1;
    }
    WORLD (c, allgather, &h, sizeof (h), hs);
    for (r = 1; r < c->size && hs[r] == hs[0]; r++)
        ;
    free (hs);
    return r < c->size ? r : 0;
}

/* ---- Saving ----------------------------------------------------------------- */

/* A hash of what must agree between ranks: the step, and every array but
 * a sharded one's first dimension. */
static uint64_t desc_hash (const gr_ckpt_t *c)
{
    uint64_t h = gr_hash64_update (GR_HASH64_INIT, &c->step, sizeof (c->step));
    h = gr_hash64_update (h, &c->narrs, sizeof (c->narrs));
    for (size_t i = 0; i < c->narrs; i++) {
        const struct arr *a = &c->arrs[i];
        int v[3] = {a->type, a->layout, a->ndims};
        h = gr_hash64_update (h, a->name, strlen (a->name) + 1);
        h = gr_hash64_update (h, v, sizeof (v));
        for (int d = a->layout == GR_CKPT_SHARDED ? 1 : 0; d < a->ndims; d++)
            h = gr_hash64_update (h, &a->dims[d], sizeof (a->dims[d]));
    }
    return gr_hash64_final (h);
}

/* Rank 0's attributes to every rank (the shared layout writes them
 * collectively): a kind byte, the name and a NUL, then 8 bytes or a
 * NUL-terminated string; 0xff at the end. */
static int bcast_attrs (gr_ckpt_t *c, gr_ckf_step_t *rec)
{
    char *buf = NULL;
    size_t len = 0;
    uint64_t blen;
    int rc = 0;

    if (c->rank == 0) {
        FILE *f = open_memstream (&buf, &len);
        for (size_t i = 0; f && i < rec->nattrs; i++) {
            const gr_ckf_attr_t *a = &rec->attrs[i];
            fputc (a->kind, f);
            fwrite (a->name, 1, strlen (a->name) + 1, f);
            if (a->kind == GR_CKF_ATTR_I64)
                fwrite (&a->i64, 8, 1, f);
            else if (a->kind == GR_CKF_ATTR_F64)
                fwrite (&a->f64, 8, 1, f);
            else
                fwrite (a->str, 1, strlen (a->str) + 1, f);
        }
        fputc (0xff, f ? f : stderr);
        if (!f || fclose (f) != 0)
            rc = rfail (c, "gr_ckpt_save", ENOMEM, "out of memory");
    }
    blen = len;
    if (agree (c, rc) < 0 || bcast_buf (c, &buf, &blen) < 0) {
        free (buf);
        return -1;
    }
    if (c->rank != 0) {
        for (const char *p = buf; p && (unsigned char)*p != 0xff && rc == 0;) {
            gr_ckf_attr_t a = {.kind = *p++};
            a.name = (char *)p;
            p += strlen (p) + 1;
            if (a.kind == GR_CKF_ATTR_I64 || a.kind == GR_CKF_ATTR_F64) {
                memcpy (a.kind == GR_CKF_ATTR_I64 ? (void *)&a.i64 : (void *)&a.f64, p, 8);
                p += 8;
            } else {
                a.str = (char *)p;
                p += strlen (p) + 1;
            }
            if (gr_ckf_step_add_attr (rec, &a) < 0)
                rc = rfail (c, "gr_ckpt_save", ENOMEM, "out of memory");
        }
    }
    free (buf);
    return agree (c, rc);
}

/* Check that every rank describes the same step, gather the sharded
 * arrays' rows and prepare the temporary step directory.  Collective. */
static int start_save (gr_ckpt_t *c, struct pending **pp)
{
    const char *fn = "gr_ckpt_save";
    size_t nsh = 0;
    uint64_t *mine = NULL, *rows = NULL, *r1 = NULL;
    struct pending *p = calloc (1, sizeof (*p));
    int rc = 0;

    for (size_t i = 0; i < c->narrs; i++)
        nsh += c->arrs[i].layout == GR_CKPT_SHARDED;
    if (!p || !(mine = calloc (nsh + 1, sizeof (*mine)))
        || !(rows = calloc ((nsh + 1) * (size_t)c->size, sizeof (*rows)))
        || !(r1 = calloc ((size_t)c->size, sizeof (*r1)))
        || !(p->data = calloc (c->narrs + 1, sizeof (*p->data))))
        rc = rfail (c, fn, ENOMEM, "out of memory");
    if (agree (c, rc) < 0)
        goto error;
    int diff = first_differing (c, fn, desc_hash (c));
    if (diff > 0)
        gr__fail (EINVAL, "%s: rank 0 and rank %d describe step %" PRId64 " differently: "
                  "every rank must give the same step and add the same arrays in the "
                  "same order, with the same types and shapes (but for the first "
                  "dimension of a sharded array)", fn, diff, c->step);
    if (diff != 0)
        goto error;
    nsh = 0;
    for (size_t i = 0; i < c->narrs; i++)
        if (c->arrs[i].layout == GR_CKPT_SHARDED)
            mine[nsh++] = c->arrs[i].dims[0];
    WORLD (c, allgather, mine, (nsh + 1) * sizeof (*mine), rows);
    if (!(p->rec = gr_ckf_step_new (c->step, c->size, c->layout)))
        rc = rfail (c, fn, ENOMEM, "out of memory");
    p->rank = c->rank;
    p->t0 = now (CLOCK_MONOTONIC);
    /* rows holds nsh + 1 values a rank (the + 1 keeps the count above 0). */
    size_t stride = nsh + 1, k = 0;
    for (size_t i = 0; rc == 0 && i < c->narrs; i++) {
        const struct arr *a = &c->arrs[i];
        bool sh = a->layout == GR_CKPT_SHARDED;
        if (sh) {
            for (int r = 0; r < c->size; r++)
                r1[r] = rows[(size_t)r * stride + k];
            k++;
        }
        if (gr_ckf_step_add_array (p->rec, a->name, a->type, a->layout, a->ndims, a->dims,
                                   sh ? r1 : NULL) < 0)
            rc = rfail (c, fn, ENOMEM, "out of memory");
        p->data[i] = a->data;
    }
    if (rc == 0 && c->rank == 0)
        for (size_t i = 0; i < c->nattrs && rc == 0; i++)
            if (gr_ckf_step_add_attr (p->rec, &c->attrs[i]) < 0)
                rc = rfail (c, fn, ENOMEM, "out of memory");
    if (rc == 0 && gr_ckf_tmp_dir (p->tmpdir, sizeof (p->tmpdir), c->dir, c->step) < 0)
        rc = rfail (c, fn, ENAMETOOLONG, "the path of step %" PRId64 " in '%s' is too long",
                    c->step, c->dir);
    if (rc == 0 && c->rank == 0) {
        p->rec->time = now (CLOCK_REALTIME);
        gr_ckf_remove_dir (p->tmpdir);
        if (mkdir (p->tmpdir, 0700) < 0)
            rc = rfail (c, fn, errno, "cannot create '%s': %s", p->tmpdir, strerror (errno));
    }
    if (agree (c, rc) < 0)
        goto error;
    /* Every rank has the same record: the time and (for the shared
     * layout) the attributes are rank 0's. */
    WORLD (c, bcast, &p->rec->time, sizeof (p->rec->time), 0);
    if (c->layout == GR_CKPT_SHARED && bcast_attrs (c, p->rec) < 0)
        goto error;
    free (mine);
    free (rows);
    free (r1);
    *pp = p;
    return 0;
error:
    if (c->rank == 0 && p && p->tmpdir[0])
        gr_ckf_remove_dir (p->tmpdir);
    pending_free (p);
    free (mine);
    free (rows);
    free (r1);
    return -1;
}

/* Chaos mode (GRIDRUN_CHAOS=ckpt-eio=RATE,ckpt-enospc=RATE; chaos.h): a
 * file of the save fails once its bytes are written, as when the disk
 * filled up or failed under it (a failed fsync), and the save fails as
 * it would then.  -1 with errno and text set when it does. */
static int chaos_write_fails (const char *path, char *text, size_t len)
{
    if (gr_chaos_io (GR_CHAOS_IO_CKPT) == 0)
        return 0;
    int e = errno;
    snprintf (text, len, "cannot write '%s': %s (injected by chaos mode, GRIDRUN_CHAOS)",
              path, strerror (e));
    GR_WARN ("chaos: %s", text);
    errno = e;
    return -1;
}

/* Write this rank's file of the per-rank layout (in the caller's thread
 * or the writer thread: no MPI here). */
static void write_own (struct pending *p)
{
    char path[PATH_MAX + 32], name[32];

    gr_ckf_rank_file (name, sizeof (name), p->rank);
    snprintf (path, sizeof (path), "%s/%s", p->tmpdir, name);
    p->rc = gr_ckf_write_rank_file (path, p->rec, p->rank, p->data, &p->file, p->text,
                                    sizeof (p->text));
    if (p->rc == 0)
        p->rc = chaos_write_fails (path, p->text, sizeof (p->text));
    p->err = p->rc < 0 ? errno : 0;
}

static void *writer_main (void *arg)
{
    write_own (arg);
    return NULL;
}

/* Async: copy what this rank writes into the staging buffer (kept from
 * save to save, so that only the first save pays for its pages) and
 * start the writer thread. */
static int stage_and_start (gr_ckpt_t *c, struct pending *p)
{
    const gr_ckf_step_t *s = p->rec;
    uint64_t need = 0, off = 0;

    for (size_t i = 0; i < s->narrays; i++)
        if (s->arrays[i].sharded == GR_CKF_SHARDED || c->rank == 0)
            need += c->arrs[i].bytes;
    if (need > c->stage_cap) {
        free (c->stage);
        c->stage_cap = 0;
        if (!(c->stage = malloc (need)))
            return rfail (c, "gr_ckpt_save", ENOMEM, "out of memory staging %" PRIu64
                          " bytes for an async save", need);
        c->stage_cap = need;
    }
    for (size_t i = 0; i < s->narrays; i++) {
        if (!(s->arrays[i].sharded == GR_CKF_SHARDED || c->rank == 0))
            continue;
        if (c->arrs[i].bytes)
            memcpy (c->stage + off, c->arrs[i].data, c->arrs[i].bytes);
        p->data[i] = c->stage + off;
        off += c->arrs[i].bytes;
    }
    if (pthread_create (&p->thread, NULL, writer_main, p) == 0)
        p->threaded = true;
    else
        write_own (p);
    return 0;
}

/* An MPI error code as errno and text. */
static int mpi_err (int rc, char *buf, size_t len)
{
    char text[MPI_MAX_ERROR_STRING];
    int n = 0, cls = 0;

    MPI_Error_class (rc, &cls);
    if (MPI_Error_string (rc, text, &n) != MPI_SUCCESS)
        snprintf (text, sizeof (text), "MPI error %d", rc);
    snprintf (buf, len, "%s", text);
    return cls == MPI_ERR_NO_SPACE ? ENOSPC : cls == MPI_ERR_QUOTA ? EDQUOT
           : cls == MPI_ERR_ACCESS ? EACCES : EIO;
}

/* The shared layout: one file, each sharded array one global dataset.
 * Rank 0 has HDF5 lay the file out (metadata in memory, written by
 * ckptfile.c); then every rank writes its rows of each dataset (and rank 0
 * the replicated ones) with collective MPI-IO at the offsets of their
 * hyperslabs, and syncs.  The datasets' checksums are of each rank's slab,
 * computed from memory before the write.
 *
 * HDF5's own MPI-IO driver does not write them: HDF5 1.10 cannot survive
 * a failed H5Fclose (it crashes when the library shuts down, at
 * MPI_Finalize), which a full disk causes.  Here a failed write is an
 * MPI-IO error like any other. */
static int write_shared (gr_ckpt_t *c, struct pending *p)
{
    const char *fn = "gr_ckpt_save";
    const gr_ckf_step_t *s = p->rec;
    size_t n = s->narrays, ns = (size_t)c->size;
    uint32_t *mine = calloc (n + 1, sizeof (*mine)), *all = calloc ((n + 1) * ns, 4);
    uint32_t *crcs = calloc (n * ns + 1, 4);
    uint64_t *offs = calloc (n + 1, sizeof (*offs));
    char path[PATH_MAX + 32], err[TEXT_MAX];
    MPI_File fh = MPI_FILE_NULL;
    int rc = 0, mrc, sfd = -1;

    snprintf (path, sizeof (path), "%s/%s", p->tmpdir, GR_CKF_SHARED_FILE);
    if (!mine || !all || !crcs || !offs)
        rc = rfail (c, fn, ENOMEM, "out of memory");
    if (agree (c, rc) < 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        if ((s->arrays[i].sharded == GR_CKF_SHARDED || c->rank == 0) && c->arrs[i].bytes)
            mine[i] = gr_crc32c (0, p->data[i], c->arrs[i].bytes);
    WORLD (c, allgather, mine, (n + 1) * sizeof (*mine), all);
    for (size_t i = 0; i < n; i++)
        for (size_t r = 0; r < ns; r++)
            crcs[i * ns + r] = all[r * (n + 1) + i];
    if (c->rank == 0
        && (gr_ckf_write_shared_meta (path, s, crcs, offs, &p->file, err, sizeof (err)) < 0
            || !(p->file.name = strdup (GR_CKF_SHARED_FILE))))
        rc = rfail (c, fn, errno, "%s", p->file.size ? "out of memory" : err);
    if (agree (c, rc) < 0)
        goto out;
    WORLD (c, bcast, offs, n * sizeof (*offs), 0);
    /* Opened before the writes, so that its fsync reports an error the
     * kernel met writing them back, whoever wrote them. */
    if ((sfd = open (path, O_RDONLY | O_CLOEXEC)) < 0)
        rc = rfail (c, fn, errno, "cannot open '%s': %s", path, strerror (errno));
    else if ((mrc = MPI_File_open (gr_world_comm (c->world), path, MPI_MODE_WRONLY,
                                   MPI_INFO_NULL, &fh))
             != MPI_SUCCESS) {
        int e = mpi_err (mrc, err, sizeof (err));
        rc = rfail (c, fn, e, "cannot open '%s' with MPI-IO: %s", path, err);
        fh = MPI_FILE_NULL;
    }
    if (agree (c, rc) < 0) {
        if (fh != MPI_FILE_NULL)
            MPI_File_close (&fh);
        if (sfd >= 0)
            close (sfd);
        goto out;
    }
    /* Every rank makes the same collective calls: for each array, as many
     * as its largest part needs. */
    for (size_t i = 0; i < n; i++) {
        const gr_ckf_array_t *a = &s->arrays[i];
        uint64_t rb = gr_ckf_row_bytes (a), off = offs[i], len = 0, most = 0;
        if (!gr_ckf_array_bytes (a))
            continue;
        if (a->sharded == GR_CKF_SHARDED) {
            off += gr_ckf_row_offset (a, c->rank) * rb;
            len = a->rows[c->rank] * rb;
            for (size_t r = 0; r < ns; r++)
                most = a->rows[r] * rb > most ? a->rows[r] * rb : most;
        } else {
            most = gr_ckf_array_bytes (a);
            len = c->rank == 0 ? most : 0;
        }
        for (uint64_t k = 0; k < most; k += MPI_CHUNK) {
            uint64_t piece = k < len ? (len - k < MPI_CHUNK ? len - k : MPI_CHUNK) : 0;
            MPI_Status st;
            int done = 0;
            mrc = MPI_File_write_at_all (fh, (MPI_Offset)(off + k),
                                         piece ? (const char *)p->data[i] + k : NULL,
                                         (int)piece, MPI_BYTE, &st);
            if (mrc != MPI_SUCCESS && rc == 0) {
                int e = mpi_err (mrc, err, sizeof (err));
                rc = rfail (c, fn, e, "cannot write '%s': %s", path, err);
            }
            /* Open MPI's OMPIO returns success from a write that failed
             * (a full disk): only the count tells. */
            if (mrc == MPI_SUCCESS && piece && rc == 0
                && (MPI_Get_count (&st, MPI_BYTE, &done) != MPI_SUCCESS
                    || (uint64_t)done != piece))
                rc = rfail (c, fn, EIO, "cannot write '%s': MPI-IO wrote %d of %" PRIu64
                            " bytes (is the disk full?)", path, done, piece);
        }
    }
    if ((mrc = MPI_File_sync (fh)) != MPI_SUCCESS && rc == 0) {
        int e = mpi_err (mrc, err, sizeof (err));
        rc = rfail (c, fn, e, "cannot sync '%s': %s", path, err);
    }
    MPI_File_close (&fh);
    if (rc == 0 && fsync (sfd) < 0)
        rc = rfail (c, fn, errno, "cannot sync '%s': %s", path, strerror (errno));
    if (rc == 0 && chaos_write_fails (path, err, sizeof (err)) < 0)
        rc = rfail (c, fn, errno, "%s", err);
    close (sfd);
    rc = agree (c, rc);
out:
    free (mine);
    free (all);
    free (crcs);
    free (offs);
    return rc;
}

/* Partner copies: send my file to my partner, receive those of the ranks
 * whose partner I am, into partner_dir/step-N/.  Failures are warnings:
 * the checkpoint itself is whole without them. */
static void exchange_copies (gr_ckpt_t *c, struct pending *p)
{
    uint64_t mine[2] = {p->file.size, p->file.crc}, *all = NULL;
    char src[PATH_MAX + 32], name[32], sd[PATH_MAX];
    unsigned char *sbuf = NULL, *rbuf = NULL;
    int sfd = -1, *fds = NULL, nf = c->nfrom;
    uint32_t *crc = NULL;
    uint64_t rounds = 0;
    gr_error_t err;
    gr_net_msg_t *req = NULL;
    bool ok = true;

    bool nomem = !(all = malloc (2 * (size_t)c->size * sizeof (*all)))
                 || !(sbuf = malloc (XFER_CHUNK))
                 || !(rbuf = malloc ((size_t)(nf ? nf : 1) * XFER_CHUNK))
                 || !(fds = malloc ((size_t)(nf ? nf : 1) * sizeof (int)))
                 || !(crc = calloc ((size_t)(nf ? nf : 1), sizeof (*crc)))
                 || !(req = malloc ((size_t)(nf + 1) * sizeof (*req)));
    if (allsum (c, nomem) > 0) {
        if (c->rank == 0)
            GR_WARN ("checkpoints: out of memory for the partner copies of step %" PRId64
                     "; none made", p->rec->step);
        goto out;
    }
    WORLD (c, allgather, mine, sizeof (mine), all);
    gr_ckf_rank_file (name, sizeof (name), c->rank);
    snprintf (src, sizeof (src), "%s/%s", p->tmpdir, name);
    if ((sfd = open (src, O_RDONLY | O_CLOEXEC)) < 0)
        GR_WARN ("checkpoints: cannot read '%s' for its partner copy: %s", src,
                 strerror (errno));
    if (gr_ckf_step_dir (sd, sizeof (sd), c->pdir, p->rec->step) < 0
        || (nf && gr_mkdir_p (sd, 0700, &err) < 0)) {
        GR_WARN ("checkpoints: cannot make the partner directory of step %" PRId64 ": %s",
                 p->rec->step, strerror (errno));
        ok = false;
    }
    for (int i = 0; i < nf; i++) {
        char tmp[PATH_MAX + 64];
        gr_ckf_rank_file (name, sizeof (name), c->from[i]);
        snprintf (tmp, sizeof (tmp), "%s/.%s.tmp", sd, name);
        fds[i] = ok ? open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
        if (ok && fds[i] < 0)
            GR_WARN ("checkpoints: cannot create '%s': %s", tmp, strerror (errno));
        uint64_t k = (all[2 * c->from[i]] + XFER_CHUNK - 1) / XFER_CHUNK;
        rounds = k > rounds ? k : rounds;
    }
    uint64_t myk = (p->file.size + XFER_CHUNK - 1) / XFER_CHUNK;
    rounds = myk > rounds ? myk : rounds;
    /* Round k moves chunk k of every file; each rank waits only on its
     * own sends and receives, and its peers reach round k too. */
    for (uint64_t k = 0; k < rounds; k++) {
        int nr = 0, ns = 0;
        for (int i = 0; i < nf; i++) {
            uint64_t size = all[2 * c->from[i]], off = k * XFER_CHUNK;
            if (off < size)
                req[nr++] = (gr_net_msg_t){
                    .peer = c->from[i],
                    .buf = rbuf + (size_t)i * XFER_CHUNK,
                    .len = size - off < XFER_CHUNK ? (size_t)(size - off) : XFER_CHUNK};
        }
        if (k < myk) {
            uint64_t off = k * XFER_CHUNK, len = p->file.size - off;
            len = len < XFER_CHUNK ? len : XFER_CHUNK;
            if (sfd < 0 || gr_ckf_pread (sfd, sbuf, len, off) < 0)
                memset (sbuf, 0, len); /* the receiver's CRC check catches it */
            req[nr + ns++] = (gr_net_msg_t){.peer = c->partner, .buf = sbuf, .len = len};
        }
        WORLD (c, exchange, req + nr, ns, req, nr);
        for (int i = 0; i < nf; i++) {
            uint64_t size = all[2 * c->from[i]], off = k * XFER_CHUNK;
            if (off >= size)
                continue;
            size_t len = size - off < XFER_CHUNK ? (size_t)(size - off) : XFER_CHUNK;
            crc[i] = gr_crc32c (crc[i], rbuf + (size_t)i * XFER_CHUNK, len);
            if (fds[i] >= 0
                && gr_pwrite_all (fds[i], rbuf + (size_t)i * XFER_CHUNK, len, (off_t)off) < 0) {
                GR_WARN ("checkpoints: cannot write the partner copy of rank %d: %s",
                         c->from[i], strerror (errno));
                close (fds[i]);
                fds[i] = -1;
            }
        }
    }
    for (int i = 0; i < nf; i++) {
        char tmp[PATH_MAX + 64], dst[PATH_MAX + 64];
        gr_ckf_rank_file (name, sizeof (name), c->from[i]);
        snprintf (tmp, sizeof (tmp), "%s/.%s.tmp", sd, name);
        snprintf (dst, sizeof (dst), "%s/%s", sd, name);
        if (fds[i] < 0) {
            unlink (tmp);
            continue;
        }
        if (crc[i] != (uint32_t)all[2 * c->from[i] + 1])
            GR_WARN ("checkpoints: the partner copy of rank %d's file arrived damaged; "
                     "dropped", c->from[i]);
        else if (fsync (fds[i]) < 0 || rename (tmp, dst) < 0 || gr_fsync_dir_of (dst) < 0)
            GR_WARN ("checkpoints: cannot keep the partner copy '%s': %s", dst,
                     strerror (errno));
        else {
            gr_fsync_dir_of (sd);
            close (fds[i]);
            continue;
        }
        close (fds[i]);
        unlink (tmp);
    }
    if (sfd >= 0)
        close (sfd);
out:
    free (all);
    free (sbuf);
    free (rbuf);
    free (fds);
    free (crc);
    free (req);
}

/* Rank 0 gets every rank's file: size, CRC, regions. */
static int gather_files (gr_ckpt_t *c, struct pending *p)
{
    const char *fn = "gr_ckpt_save";
    uint64_t hdr[3] = {p->file.size, p->file.crc, p->file.nregions}, *hdrs = NULL;
    uint64_t *mine = malloc ((p->file.nregions * 5 + 1) * sizeof (*mine)), *regs = NULL;
    int *counts = NULL, *displs = NULL, rc = 0, n = (int)p->file.nregions * 5;
    size_t *lens = NULL;

    for (size_t k = 0; mine && k < p->file.nregions; k++) {
        const gr_ckf_region_t *g = &p->file.regions[k];
        uint64_t *m = mine + 5 * k;
        m[0] = (uint64_t)g->array;
        m[1] = (uint64_t)(g->slab + 1);
        m[2] = g->offset;
        m[3] = g->size;
        m[4] = g->crc;
    }
    if (c->rank == 0 && (!(hdrs = malloc (3 * (size_t)c->size * sizeof (*hdrs)))
                         || !(counts = malloc ((size_t)c->size * sizeof (int)))
                         || !(lens = malloc ((size_t)c->size * sizeof (*lens)))
                         || !(displs = malloc ((size_t)c->size * sizeof (int)))))
        rc = -1;
    if (agree (c, !mine || rc < 0 ? rfail (c, fn, ENOMEM, "out of memory") : 0) < 0)
        goto out;
    WORLD (c, gather, hdr, sizeof (hdr), hdrs, 0);
    WORLD (c, gather, &n, sizeof (n), counts, 0);
    if (c->rank == 0) {
        int total = 0;
        for (int r = 0; r < c->size; r++) {
            displs[r] = total;
            total += counts[r];
            lens[r] = (size_t)counts[r] * sizeof (*regs);
        }
        if (!(regs = malloc (((size_t)total + 1) * sizeof (*regs))))
            rc = rfail (c, fn, ENOMEM, "out of memory");
    }
    if (agree (c, rc) < 0)
        goto out;
    WORLD (c, gatherv, mine, (size_t)n * sizeof (*mine), regs, lens, 0);
    for (int r = 0; c->rank == 0 && r < c->size && rc == 0; r++) {
        char name[32];
        gr_ckf_file_t f = {.name = name, .size = hdrs[3 * r], .crc = (uint32_t)hdrs[3 * r + 1]};
        gr_ckf_rank_file (name, sizeof (name), r);
        for (uint64_t k = 0; k < hdrs[3 * r + 2] && rc == 0; k++) {
            const uint64_t *m = regs + displs[r] + 5 * k;
            if (gr_ckf_file_add_region (&f, (int)m[0], (int)m[1] - 1, m[2], m[3],
                                        (uint32_t)m[4]) < 0)
                rc = rfail (c, fn, ENOMEM, "out of memory");
        }
        if (rc == 0 && gr_ckf_step_add_file (p->rec, &f) < 0)
            rc = rfail (c, fn, ENOMEM, "out of memory");
        free (f.regions);
    }
out:
    free (mine);
    free (hdrs);
    free (regs);
    free (counts);
    free (displs);
    free (lens);
    return rc;
}

static int step_cmp (const void *a, const void *b)
{
    const gr_ckf_step_t *x = *(gr_ckf_step_t *const *)a, *y = *(gr_ckf_step_t *const *)b;
    return x->step < y->step ? -1 : x->step > y->step;
}

/* Move a committed step directory out of sight, then remove it. */
static void remove_step (gr_ckpt_t *c, int64_t step)
{
    char sd[PATH_MAX], del[PATH_MAX + 8];

    if (gr_ckf_step_dir (sd, sizeof (sd), c->dir, step) < 0
        || gr_ckf_tmp_dir (del, sizeof (del), c->dir, step) < 0)
        return;
    strcpy (del + strlen (del) - 4, ".del");
    if (rename (sd, del) < 0 && errno != ENOENT) {
        GR_WARN ("checkpoints: cannot remove old step '%s': %s", sd, strerror (errno));
        return;
    }
    if (gr_ckf_remove_dir (del) < 0)
        GR_WARN ("checkpoints: cannot remove all of '%s': %s", del, strerror (errno));
}

/* Rank 0: the commit proper.  meta into the temporary directory (synced
 * with it), the rename, the directory synced, then the index, then the
 * steps beyond keep removed. */
static int publish (gr_ckpt_t *c, struct pending *p)
{
    const char *fn = "gr_ckpt_save";
    char sd[PATH_MAX], old[PATH_MAX + 8];
    gr_error_t err;
    gr_ckf_step_t *rec = p->rec;
    struct stat st;
    bool replaced = false;

    if (gr_ckf_step_check (rec, "the new step", &err) < 0)
        return rfail (c, fn, EIO, "%s (a gridrun bug)", err.text);
    if (gr_ckf_meta_write (p->tmpdir, rec, &err) < 0)
        return rfail (c, fn, errno, "%s", err.text);
    if (gr_ckf_step_dir (sd, sizeof (sd), c->dir, rec->step) < 0)
        return rfail (c, fn, ENAMETOOLONG, "path too long in '%s'", c->dir);
    /* Saving a step again replaces it. */
    snprintf (old, sizeof (old), "%s/.step-%08" PRId64 ".del", c->dir, rec->step);
    if (lstat (sd, &st) == 0) {
        gr_ckf_remove_dir (old);
        if (rename (sd, old) < 0)
            return rfail (c, fn, errno, "cannot move the old '%s' aside: %s", sd,
                          strerror (errno));
        replaced = true;
    }
    if (rename (p->tmpdir, sd) < 0)
        return rfail (c, fn, errno, "cannot rename '%s' to '%s': %s", p->tmpdir, sd,
                      strerror (errno));
    if (gr_fsync_dir_of (sd) < 0)
        return rfail (c, fn, errno, "cannot sync '%s': %s", c->dir, strerror (errno));
    /* The index: this step in, steps beyond keep out. */
    size_t n = 0;
    for (size_t i = 0; i < c->nidx; i++) {
        if (c->idx[i]->step == rec->step)
            gr_ckf_step_free (c->idx[i]);
        else
            c->idx[n++] = c->idx[i];
    }
    gr_ckf_step_t **idx = realloc (c->idx, (n + 1) * sizeof (*idx));
    if (!idx)
        return rfail (c, fn, ENOMEM, "out of memory");
    c->idx = idx;
    c->idx[n++] = rec;
    p->rec = NULL;
    c->nidx = n;
    qsort (c->idx, c->nidx, sizeof (*c->idx), step_cmp);
    size_t drop = c->keep > 0 && c->nidx > (size_t)c->keep ? c->nidx - (size_t)c->keep : 0;
    int rc = 0;
    if (gr_ckf_index_write (c->dir, c->idx + drop, c->nidx - drop, &err) < 0)
        rc = rfail (c, fn, errno, "step %" PRId64 " is committed, but %s; loads find it by "
                    "its directory", rec->step, err.text);
    if (replaced)
        gr_ckf_remove_dir (old);
    if (rc == 0) {
        for (size_t i = 0; i < drop; i++) {
            remove_step (c, c->idx[i]->step);
            gr_ckf_step_free (c->idx[i]);
        }
        memmove (c->idx, c->idx + drop, (c->nidx - drop) * sizeof (*c->idx));
        c->nidx -= drop;
    }
    return rc;
}

/* Each rank drops the partner copies of steps that are no longer kept
 * (rank 0 tells which are). */
static void prune_copies (gr_ckpt_t *c)
{
    int64_t *kept = NULL;
    uint64_t n = c->rank == 0 ? c->nidx : 0;
    DIR *d;
    struct dirent *de;

    WORLD (c, bcast, &n, sizeof (n), 0);
    kept = malloc ((n + 1) * sizeof (*kept));
    if (allsum (c, kept == NULL) > 0) {
        free (kept);
        return;
    }
    for (uint64_t i = 0; c->rank == 0 && i < n; i++)
        kept[i] = c->idx[i]->step;
    WORLD (c, bcast, kept, n * sizeof (*kept), 0);
    if ((d = opendir (c->pdir))) {
        while ((de = readdir (d))) {
            char *e, p[PATH_MAX];
            if (strncmp (de->d_name, "step-", 5) != 0)
                continue;
            long long s = strtoll (de->d_name + 5, &e, 10);
            bool keep = *e != '\0';
            for (uint64_t i = 0; i < n && !keep; i++)
                keep = kept[i] == s;
            if (!keep && snprintf (p, sizeof (p), "%s/%s", c->pdir, de->d_name)
                             < (int)sizeof (p))
                gr_ckf_remove_dir (p);
        }
        closedir (d);
    }
    free (kept);
}

/* Finish a save: the writes agreed on, partner copies, the files'
 * checksums to rank 0, the commit, and the outcome agreed on. */
static int commit (gr_ckpt_t *c, struct pending *p, const char *fn)
{
    int64_t step = p->rec ? p->rec->step : -1; /* publish takes the record */
    int rc;

    if (p->threaded) {
        pthread_join (p->thread, NULL);
        p->threaded = false;
    }
    rc = p->rc < 0 ? rfail (c, fn, p->err, "%s", p->text) : 0;
    if (agree (c, rc) < 0)
        goto error;
    if (c->layout == GR_CKPT_PER_RANK) {
        if (c->pdir && c->partner >= 0)
            exchange_copies (c, p);
        if (gather_files (c, p) < 0)
            goto error;
    } else if (c->rank == 0 && gr_ckf_step_add_file (p->rec, &p->file) < 0) {
        rc = rfail (c, fn, ENOMEM, "out of memory");
    }
    if (rc == 0 && c->rank == 0)
        rc = publish (c, p);
    if (agree (c, rc) < 0)
        goto error;
    if (c->pdir)
        prune_copies (c);
    if (c->rank == 0) {
        GR_INFO ("checkpoints: committed a step in %.3f s",
                 now (CLOCK_MONOTONIC) - p->t0);
        gr__metrics_event ("checkpoint", step, now (CLOCK_MONOTONIC) - p->t0, c->dir);
    }
    pending_free (p);
    return 0;
error:
    if (c->rank == 0 && p->tmpdir[0])
        gr_ckf_remove_dir (p->tmpdir);
    pending_free (p);
    return -1;
}

/* Collect an async save when a new one starts (or a load): its failure
 * is kept for gr_ckpt_wait. */
static void collect (gr_ckpt_t *c, const char *fn)
{
    struct pending *p = c->pend;

    if (!p)
        return;
    int64_t step = p->rec->step;
    c->pend = NULL;
    if (commit (c, p, fn) < 0 && !c->late_err) {
        c->late_err = errno;
        snprintf (c->late_text, sizeof (c->late_text), "the async save of step %" PRId64
                  " failed: %s", step, gr_last_error ());
        if (c->rank == 0)
            GR_WARN ("checkpoints: %s", c->late_text);
    }
}

/* The save proper, once the step is agreed on; the description stays
 * until it returns (staging copies from it). */
static int save (gr_ckpt_t *c, struct pending *p, const char *fn)
{
    if (c->layout == GR_CKPT_SHARED) {
        if (write_shared (c, p) < 0) {
            if (c->rank == 0)
                gr_ckf_remove_dir (p->tmpdir);
            pending_free (p);
            return -1;
        }
        return commit (c, p, fn);
    }
    if (!c->async) {
        write_own (p);
        return commit (c, p, fn);
    }
    if (agree (c, stage_and_start (c, p)) < 0) {
        if (p->threaded)
            pthread_join (p->thread, NULL);
        if (c->rank == 0)
            gr_ckf_remove_dir (p->tmpdir);
        pending_free (p);
        return -1;
    }
    c->pend = p;
    return 0;
}

static int ckpt_save_timed (gr_ckpt_t *c)
{
    const char *fn = "gr_ckpt_save";
    struct pending *p = NULL;
    int rc;

    if (!c)
        return gr__fail (EINVAL, "%s: the checkpoint is NULL", fn);
    rc = c->begun ? 0 : gr__fail (EPROTO, "%s: call gr_ckpt_begin first", fn);
    if (agree (c, rc) < 0)
        return -1;
    collect (c, fn);
    rc = start_save (c, &p);
    if (rc == 0)
        rc = save (c, p, fn);
    clear_desc (c);
    return rc;
}

static int ckpt_wait_timed (gr_ckpt_t *c)
{
    const char *fn = "gr_ckpt_wait";
    int rc = 0;

    if (!c)
        return gr__fail (EINVAL, "%s: the checkpoint is NULL", fn);
    if (c->pend) {
        struct pending *p = c->pend;
        c->pend = NULL;
        rc = commit (c, p, fn);
    }
    /* An earlier failure was logged when it was collected; a newer one
     * wins. */
    if (rc == 0 && c->late_err)
        rc = gr__fail (c->late_err, "%s: %s", fn, c->late_text);
    c->late_err = 0;
    return rc;
}

/* ---- Loading ----------------------------------------------------------------- */

static void close_readers (gr_ckf_reader_t **readers, size_t n)
{
    for (size_t i = 0; readers && i < n; i++)
        gr_ckf_reader_close (readers[i]);
    free (readers);
}

static void unload (gr_ckpt_t *c)
{
    if (c->loaded)
        close_readers (c->readers, c->loaded->nfiles);
    c->readers = NULL;
    gr_ckf_step_free (c->loaded);
    c->loaded = NULL;
    free (c->report);
    c->report = NULL;
}

/* Which rank verifies file (per-rank layout) or slab i of a step saved by
 * nsaved ranks: spread in proportion, so that a rank checks what it will
 * read when the size is the same. */
static int owner (int i, int nsaved, int size)
{
    return (int)((int64_t)i * size / nsaved);
}

/* What one rank found in one file. */
struct vres {
    int fi;
    bool bad;
    char why[TEXT_MAX];    /* "rank-00001.h5: missing", or a note; "" if nothing */
};

/* Which bytes of file f's regions (those this rank verifies: want[k], or
 * all when want is NULL) go straight into a target as they are verified:
 * cp[k] the bytes and where to, tix[k] the target (-1: none).  A
 * replicated array's region is copied by the rank that verifies it (the
 * others get it when the step is chosen), a sharded slab's rows where they
 * overlap this rank's part under the current size.  Targets too small are
 * left to the check when the step is chosen. */
static void plan_copies (const gr_ckpt_t *c, const gr_ckf_step_t *s, const gr_ckf_file_t *f,
                         const bool *want, gr_ckf_copy_t *cp, int *tix)
{
    for (size_t k = 0; k < f->nregions; k++) {
        const gr_ckf_region_t *g = &f->regions[k];
        const gr_ckf_array_t *a = &s->arrays[g->array];
        int t = want && !want[k] ? -1 : find_target (c, a->name);
        unsigned char *data = t < 0 ? NULL : c->tgts[t].data;
        uint64_t first = 0, count = 0, rb = gr_ckf_row_bytes (a);

        cp[k] = (gr_ckf_copy_t){0};
        tix[k] = -1;
        if (t < 0 || (g->slab < 0) != (a->sharded != GR_CKF_SHARDED))
            continue;
        if (g->slab < 0) {
            if (c->tgts[t].bytes >= g->size)
                cp[k] = (gr_ckf_copy_t){data, 0, g->size};
        } else {
            gr_ckf_split (a->dims[0], c->size, c->rank, &first, &count);
            uint64_t off = gr_ckf_row_offset (a, g->slab), n = a->rows[g->slab];
            uint64_t lo = first > off ? first : off;
            uint64_t hi = first + count < off + n ? first + count : off + n;
            if (c->tgts[t].bytes >= count * rb && lo < hi && g->size == n * rb)
                cp[k] = (gr_ckf_copy_t){data + (lo - first) * rb, (lo - off) * rb,
                                        (hi - off) * rb};
        }
        if (cp[k].dst)
            tix[k] = t;
    }
}

/* Verify this rank's share of step s (in directory sd), copying what it
 * verifies of the targets into them as it goes.  The files it found
 * intact stay open in readers[] (one slot per file), for the reads that
 * follow when the step is chosen.  -1 only when out of memory. */
static int verify_share (gr_ckpt_t *c, const gr_ckf_step_t *s, const char *sd,
                         gr_ckf_reader_t **readers, struct vres **vp, int *nvp)
{
    struct vres *v = calloc (s->nfiles + 1, sizeof (*v));
    char path[PATH_MAX + 32], why[TEXT_MAX - 64];
    int nv = 0;

    if (!v)
        return rfail (c, "gr_ckpt_load", ENOMEM, "out of memory");
    for (size_t fi = 0; fi < s->nfiles; fi++) {
        const gr_ckf_file_t *f = &s->files[fi];
        bool *want = NULL, any = false, gaps;
        if (s->layout == GR_CKF_PER_RANK) {
            if (owner ((int)fi, s->nranks, c->size) != c->rank)
                continue;
            gaps = true;
            any = true;
        } else {
            if (!(want = calloc (f->nregions + 1, sizeof (*want)))) {
                free (v);
                return rfail (c, "gr_ckpt_load", ENOMEM, "out of memory");
            }
            for (size_t k = 0; k < f->nregions; k++) {
                int slab = f->regions[k].slab;
                want[k] = (slab < 0 ? 0 : owner (slab, s->nranks, c->size)) == c->rank;
                any = any || want[k];
            }
            gaps = c->rank == 0;
        }
        if (!any && !gaps) {
            free (want);
            continue;
        }
        gr_ckf_copy_t *cp = NULL;
        int *tix = NULL;
        if (c->ntgts && (!(cp = calloc (f->nregions + 1, sizeof (*cp)))
                         || !(tix = calloc (f->nregions + 1, sizeof (*tix))))) {
            free (cp);
            free (want);
            free (v);
            return rfail (c, "gr_ckpt_load", ENOMEM, "out of memory");
        }
        if (cp)
            plan_copies (c, s, f, want, cp, tix);
        snprintf (path, sizeof (path), "%s/%s", sd, f->name);
        int rc = gr_ckf_reader_open (path, f->size, &readers[fi], why, sizeof (why));
        if (rc == 0)
            rc = gr_ckf_reader_verify (readers[fi], s, f, want, cp, gaps, why, sizeof (why));
        for (size_t k = 0; rc == 0 && cp && k < f->nregions; k++)
            if (tix[k] >= 0)
                c->tgts[tix[k]].got += cp[k].hi - cp[k].lo;
        free (cp);
        free (tix);
        free (want);
        if (rc < 0) {
            free (v);
            return rfail (c, "gr_ckpt_load", errno, "out of memory");
        }
        if (rc == 1) {
            /* A damaged file may come back from a partner copy, as a new
             * file: a read opens that one. */
            gr_ckf_reader_close (readers[fi]);
            readers[fi] = NULL;
        }
        v[nv].fi = (int)fi;
        v[nv].bad = rc == 1;
        if (rc == 1)
            snprintf (v[nv].why, sizeof (v[nv].why), "%s: %s", f->name, why);
        nv++;
    }
    *vp = v;
    *nvp = nv;
    return 0;
}

static int count_bad (const struct vres *v, int nv)
{
    int n = 0;
    for (int i = 0; i < nv; i++)
        n += v[i].bad;
    return n;
}

/* Move file b of step s from rank h's partner directory to rank dest,
 * which writes it into the step directory sd. */
static void transfer (gr_ckpt_t *c, const gr_ckf_step_t *s, const char *sd, int b, int h,
                      int dest, struct vres *v, int nv, unsigned char *buf)
{
    const gr_ckf_file_t *f = &s->files[b];
    char src[PATH_MAX + 64], tmp[PATH_MAX + 64], dst[PATH_MAX + 64];
    int sfd = -1, dfd = -1;
    uint32_t crc = 0;
    bool ok = true;

    if (h == c->rank) {
        char pd[PATH_MAX];
        gr_ckf_step_dir (pd, sizeof (pd), c->pdir, s->step);
        snprintf (src, sizeof (src), "%s/%s", pd, f->name);
        sfd = open (src, O_RDONLY | O_CLOEXEC);
    }
    if (dest == c->rank) {
        snprintf (tmp, sizeof (tmp), "%s/.%s.repair", sd, f->name);
        snprintf (dst, sizeof (dst), "%s/%s", sd, f->name);
        if ((dfd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
            ok = false;
    }
    for (uint64_t off = 0; off < f->size; off += XFER_CHUNK) {
        size_t len = f->size - off < XFER_CHUNK ? (size_t)(f->size - off) : XFER_CHUNK;
        if (h == c->rank && (sfd < 0 || gr_ckf_pread (sfd, buf, len, off) < 0))
            memset (buf, 0, len);
        gr_net_msg_t m = {.peer = h == c->rank ? dest : h, .buf = buf, .len = len};
        if (h == c->rank && dest != c->rank)
            WORLD (c, exchange, &m, 1, NULL, 0);
        else if (dest == c->rank && h != c->rank)
            WORLD (c, exchange, NULL, 0, &m, 1);
        if (dest == c->rank) {
            crc = gr_crc32c (crc, buf, len);
            if (ok && gr_pwrite_all (dfd, buf, len, (off_t)off) < 0)
                ok = false;
        }
    }
    if (sfd >= 0)
        close (sfd);
    if (dest != c->rank)
        return;
    ok = ok && crc == f->crc && fsync (dfd) == 0;
    if (dfd >= 0)
        close (dfd);
    ok = ok && rename (tmp, dst) == 0 && gr_fsync_dir_of (dst) == 0;
    if (!ok)
        unlink (tmp);
    for (int j = 0; j < nv; j++) {
        if (v[j].fi != b)
            continue;
        size_t used = strlen (v[j].why);
        if (ok)
            snprintf (v[j].why + used, sizeof (v[j].why) - used,
                      "; restored from the partner copy kept by rank %d", h);
        else
            snprintf (v[j].why + used, sizeof (v[j].why) - used,
                      "; the partner copy kept by rank %d could not be restored", h);
        v[j].bad = !ok;
    }
}

/* Files of step s that failed verification come back from partner
 * copies: every rank looks for copies of them in its partner directory,
 * the lowest rank holding a good one sends it to the rank that checked
 * the file, which puts it back into the step directory. */
static int repair (gr_ckpt_t *c, const gr_ckf_step_t *s, const char *sd, struct vres *v,
                   int nv)
{
    int nbad = count_bad (v, nv), *counts = NULL, *b = NULL, *mine = NULL;
    int *holder = NULL, *badfi = NULL, nb = 0, rc = 0;
    unsigned char *buf = NULL;
    size_t *lens = NULL;

    if (!(counts = malloc ((size_t)c->size * sizeof (int)))
        || !(lens = malloc ((size_t)c->size * sizeof (*lens)))
        || !(badfi = malloc ((size_t)(nbad + 1) * sizeof (int))) || !(buf = malloc (XFER_CHUNK)))
        rc = rfail (c, "gr_ckpt_load", ENOMEM, "out of memory");
    if (agree (c, rc) < 0)
        goto out;
    for (int i = 0, k = 0; i < nv; i++)
        if (v[i].bad)
            badfi[k++] = v[i].fi;
    WORLD (c, allgather, &nbad, sizeof (nbad), counts);
    for (int r = 0; r < c->size; r++) {
        nb += counts[r];
        lens[r] = (size_t)counts[r] * sizeof (int);
    }
    if (!(b = malloc ((size_t)(nb + 1) * sizeof (int)))
        || !(mine = malloc ((size_t)(nb + 1) * sizeof (int)))
        || !(holder = malloc ((size_t)(nb + 1) * sizeof (int))))
        rc = rfail (c, "gr_ckpt_load", ENOMEM, "out of memory");
    if (agree (c, rc) < 0)
        goto out;
    WORLD (c, allgatherv, badfi, (size_t)nbad * sizeof (int), b, lens);
    for (int i = 0; i < nb; i++) {
        char pd[PATH_MAX], path[PATH_MAX + 32], why[TEXT_MAX];
        mine[i] = INT_MAX;
        if (gr_ckf_step_dir (pd, sizeof (pd), c->pdir, s->step) < 0)
            continue;
        snprintf (path, sizeof (path), "%s/%s", pd, s->files[b[i]].name);
        if (access (path, F_OK) == 0
            && gr_ckf_verify_file (path, s, &s->files[b[i]], NULL, true, why, sizeof (why)) == 0)
            mine[i] = c->rank;
    }
    WORLD (c, allreduce_int, mine, holder, nb, GR_MIN);
    for (int i = 0; i < nb; i++)
        if (holder[i] != INT_MAX)
            transfer (c, s, sd, b[i], holder[i], owner (b[i], s->nranks, c->size), v, nv,
                      buf);
out:
    free (counts);
    free (lens);
    free (badfi);
    free (b);
    free (mine);
    free (holder);
    free (buf);
    return rc;
}

/* Every rank must name the same targets in the same order (their sizes
 * may differ: a sharded array's part). */
static int check_targets (gr_ckpt_t *c, const char *fn)
{
    uint64_t h = gr_hash64_update (GR_HASH64_INIT, &c->ntgts, sizeof (c->ntgts));

    for (size_t i = 0; i < c->ntgts; i++)
        h = gr_hash64_update (h, c->tgts[i].name, strlen (c->tgts[i].name) + 1);
    int diff = first_differing (c, fn, gr_hash64_final (h));
    if (diff > 0)
        return gr__fail (EINVAL, "%s: rank 0 and rank %d name different targets: every "
                         "rank must call gr_ckpt_target for the same arrays in the same "
                         "order", fn, diff);
    return diff;
}

static int read_array (gr_ckpt_t *c, int ai, uint64_t first, uint64_t count, void *data,
                       bool have);
static int lookup (gr_ckpt_t *c, const char *fn, const char *name, int *aip,
                   uint64_t *first, uint64_t *count);
static uint64_t part_bytes (const gr_ckf_array_t *a, uint64_t count);

/* The chosen step's targets: each must be an array of the step and hold
 * this rank's part; what the verification did not copy in (a replicated
 * array on the ranks that did not verify it, rows another rank verified
 * when the size changed) is read now, as gr_ckpt_read would. */
static int fill_targets (gr_ckpt_t *c, const char *fn)
{
    for (size_t t = 0; t < c->ntgts; t++) {
        struct target *g = &c->tgts[t];
        uint64_t first = 0, count = 0, need = 0;
        int ai = -1;
        int rc = lookup (c, fn, g->name, &ai, &first, &count);
        if (rc == 0 && g->bytes < (need = part_bytes (&c->loaded->arrays[ai], count)))
            rc = rfail (c, fn, EINVAL, "array '%s' needs %" PRIu64 " bytes here; the target "
                        "has %zu", g->name, need, g->bytes);
        if (agree (c, rc) < 0)
            return -1;
        if (agree (c, read_array (c, ai, first, count, g->data, g->got == need)) < 0)
            return -1;
    }
    return 0;
}

static int ckpt_load_timed (gr_ckpt_t *c, int64_t *step)
{
    const char *fn = "gr_ckpt_load";
    gr_ckf_catalog_t *cat = NULL;
    gr_ckf_step_t *found = NULL;
    char *report = NULL;
    size_t next = 0;
    gr_error_t err;
    int rc;

    if (!c)
        return gr__fail (EINVAL, "%s: the checkpoint is NULL", fn);
    rc = step ? 0 : gr__fail (EINVAL, "%s: step is NULL", fn);
    if (agree (c, rc) < 0)
        return -1;
    collect (c, fn);
    unload (c);
    *step = -1;
    if (check_targets (c, fn) < 0)
        return -1;
    if (c->rank == 0 && !(cat = gr_ckf_catalog_load (c->dir, &err)))
        rc = rfail (c, fn, errno, "%s", err.text);
    if (agree (c, rc) < 0)
        return -1;
    for (;;) {
        char *text = NULL, sd[PATH_MAX], mytext[4 * TEXT_MAX] = "";
        gr_ckf_reader_t **readers = NULL;
        struct vres *v = NULL;
        int nv = 0;
        /* Rank 0 picks the next step to try, newest first. */
        while (c->rank == 0 && next < cat->n) {
            gr_ckf_entry_t *e = &cat->entries[next++];
            if (!e->rec || !e->has_dir) {
                str_add (&report, "step %" PRId64 ": %s", e->step,
                         e->problem[0] ? e->problem : "no readable record");
                continue;
            }
            if (e->problem[0])
                GR_WARN ("checkpoints: step %" PRId64 ": %s", e->step, e->problem);
            if (!(text = gr_ckf_step_format (e->rec, NULL)))
                rc = rfail (c, fn, ENOMEM, "out of memory");
            break;
        }
        if (agree (c, rc) < 0 || bcast_str (c, &text) < 0)
            goto error;
        if (!text)
            break;
        gr_ckf_step_t *s = gr_ckf_step_parse (text, strlen (text), "the step record", 1, &err);
        free (text);
        rc = s ? 0 : rfail (c, fn, errno, "%s", err.text);
        if (rc == 0 && gr_ckf_step_dir (sd, sizeof (sd), c->dir, s->step) < 0)
            rc = rfail (c, fn, ENAMETOOLONG, "path too long in '%s'", c->dir);
        if (rc == 0 && !(readers = calloc (s->nfiles + 1, sizeof (*readers))))
            rc = rfail (c, fn, ENOMEM, "out of memory");
        for (size_t t = 0; t < c->ntgts; t++)
            c->tgts[t].got = 0;
        if (rc == 0)
            rc = verify_share (c, s, sd, readers, &v, &nv);
        if (agree (c, rc) < 0) {
            close_readers (readers, s ? s->nfiles : 0);
            gr_ckf_step_free (s);
            free (v);
            goto error;
        }
        int bad = allsum (c, count_bad (v, nv));
        if (bad && c->pdir && s->layout == GR_CKF_PER_RANK) {
            if (repair (c, s, sd, v, nv) < 0) {
                close_readers (readers, s->nfiles);
                gr_ckf_step_free (s);
                free (v);
                goto error;
            }
            bad = allsum (c, count_bad (v, nv));
        }
        for (int i = 0; i < nv; i++) {
            if (!v[i].why[0])
                continue;
            size_t used = strlen (mytext);
            snprintf (mytext + used, sizeof (mytext) - used, "%s%s", used ? "; " : "",
                      v[i].why);
        }
        free (v);
        char *all = gather_text (c, mytext);
        if (c->rank == 0 && all && all[0])
            str_add (&report, "step %" PRId64 ": %s", s->step, all);
        free (all);
        if (!bad) {
            found = s;
            c->readers = readers;
            break;
        }
        /* Rejected: its files are unmapped and closed at once. */
        close_readers (readers, s->nfiles);
        gr_ckf_step_free (s);
    }
    if (c->rank == 0 && report)
        str_add (&report, found ? "using step %" PRId64 : "no valid step%.0" PRId64,
                 found ? found->step : 0);
    if (bcast_str (c, &report) < 0)
        goto error;
    gr_ckf_catalog_free (cat);
    cat = NULL;
    c->report = report;
    report = NULL;
    if (!found)
        return gr__fail (ENOENT, "%s: no valid checkpoint in '%s'%s%s", fn, c->dir,
                         c->report ? ": " : "", c->report ? c->report : "");
    c->loaded = found;
    if (c->rank == 0 && c->report)
        GR_WARN ("checkpoints: %s", c->report);
    if (fill_targets (c, fn) < 0) {
        unload (c);
        return -1;
    }
    *step = found->step;
    return 0;
error:
    if (found)
        close_readers (c->readers, found->nfiles);
    c->readers = NULL;
    gr_ckf_catalog_free (cat);
    gr_ckf_step_free (found);
    free (report);
    return -1;
}

/* ---- Reading ------------------------------------------------------------------ */

static const gr_ckf_region_t *find_region (const gr_ckf_file_t *f, int ai, int slab)
{
    for (size_t k = 0; k < f->nregions; k++)
        if (f->regions[k].array == ai && f->regions[k].slab == slab)
            return &f->regions[k];
    return NULL;
}

/* Copy len bytes at off of the loaded step's file fi into buf: from the
 * mapping this rank verified it through, else (a file another rank
 * verified) opened now. */
static int read_at (gr_ckpt_t *c, size_t fi, void *buf, uint64_t len, uint64_t off)
{
    const gr_ckf_file_t *f = &c->loaded->files[fi];
    char sd[PATH_MAX], path[PATH_MAX + 32], why[TEXT_MAX - 64];

    gr_ckf_step_dir (sd, sizeof (sd), c->dir, c->loaded->step);
    snprintf (path, sizeof (path), "%s/%s", sd, f->name);
    if (!c->readers[fi]) {
        int rc = gr_ckf_reader_open (path, f->size, &c->readers[fi], why, sizeof (why));
        if (rc < 0)
            return rfail (c, "gr_ckpt_read", errno, "out of memory");
        if (rc == 1)
            return rfail (c, "gr_ckpt_read", EIO, "'%s' changed since gr_ckpt_load: %s",
                          path, why);
    }
    if (gr_ckf_reader_copy (c->readers[fi], buf, len, off) < 0)
        return rfail (c, "gr_ckpt_read", errno, "cannot read '%s': %s", path,
                      strerror (errno));
    return 0;
}

/* Straight from the files' bytes, no HDF5: the datasets are contiguous,
 * and the record says where each slab lies (verified by the load).  A
 * replicated array: per-rank layout, read by rank 0 from its file and
 * broadcast; shared layout, read by every rank.  A sharded one: from each
 * saved slab that overlaps this rank's rows (per-rank layout, slab r is
 * in file r; shared, all are in the one file, one after the other). */
static int read_array (gr_ckpt_t *c, int ai, uint64_t first, uint64_t count, void *data,
                       bool have)
{
    const gr_ckf_step_t *s = c->loaded;
    const gr_ckf_array_t *a = &s->arrays[ai];
    bool shared = s->layout == GR_CKF_SHARED;
    uint64_t rb = gr_ckf_row_bytes (a);
    int rc = 0;

    if (a->sharded != GR_CKF_SHARDED) {
        const gr_ckf_region_t *g = find_region (&s->files[0], ai, -1);
        if (!g)         /* none for an array of 0 bytes (the record is checked) */
            return 0;
        if ((shared || c->rank == 0) && !have)
            rc = read_at (c, 0, data, g->size, g->offset);
        if (!shared)
            WORLD (c, bcast, data, g->size, 0);
        return rc;
    }
    for (int sl = 0; sl < s->nranks && rc == 0 && rb && !have; sl++) {
        uint64_t off = gr_ckf_row_offset (a, sl), n = a->rows[sl];
        uint64_t lo = first > off ? first : off;
        uint64_t hi = first + count < off + n ? first + count : off + n;
        size_t fi = shared ? 0 : (size_t)sl;
        if (lo >= hi)
            continue;
        const gr_ckf_region_t *g = find_region (&s->files[fi], ai, sl);
        if (!g)
            return rfail (c, "gr_ckpt_read", EBADMSG, "no data of '%s' in %s", a->name,
                          s->files[fi].name);
        rc = read_at (c, fi, (unsigned char *)data + (lo - first) * rb, (hi - lo) * rb,
                      g->offset + (lo - off) * rb);
    }
    return rc;
}

/* The bytes of this rank's part of a, count rows when sharded. */
static uint64_t part_bytes (const gr_ckf_array_t *a, uint64_t count)
{
    return a->sharded == GR_CKF_SHARDED ? count * gr_ckf_row_bytes (a) : gr_ckf_array_bytes (a);
}

/* The array called name and this rank's part of it; -1 (not agreed)
 * when there is none. */
static int lookup (gr_ckpt_t *c, const char *fn, const char *name, int *aip,
                   uint64_t *first, uint64_t *count)
{
    int ai;

    if (!c->loaded)
        return gr__fail (EPROTO, "%s: no step is loaded (call gr_ckpt_load, and check that "
                         "it found one)", fn);
    if (!name || (ai = gr_ckf_find_array (c->loaded, name)) < 0)
        return gr__fail (ENOENT, "%s: step %" PRId64 " has no array '%s'", fn,
                         c->loaded->step, name ? name : "(null)");
    const gr_ckf_array_t *a = &c->loaded->arrays[ai];
    *first = 0;
    *count = a->ndims ? a->dims[0] : 1;
    if (a->sharded == GR_CKF_SHARDED)
        gr_ckf_split (a->dims[0], c->size, c->rank, first, count);
    *aip = ai;
    return 0;
}

int gr_ckpt_read (gr_ckpt_t *c, const char *name, void *data, size_t bytes)
{
    const char *fn = "gr_ckpt_read";
    uint64_t first = 0, count = 0, need = 0;
    int ai = -1, rc;

    if (!c)
        return gr__fail (EINVAL, "%s: the checkpoint is NULL", fn);
    rc = lookup (c, fn, name, &ai, &first, &count);
    if (rc == 0) {
        const gr_ckf_array_t *a = &c->loaded->arrays[ai];
        need = part_bytes (a, count);
        if (bytes < need)
            rc = rfail (c, fn, EINVAL, "array '%s' needs %" PRIu64 " bytes here (%" PRIu64
                        " rows of %" PRIu64 "); the buffer has %zu",
                        name, need, a->sharded == GR_CKF_SHARDED ? count : 1,
                        a->sharded == GR_CKF_SHARDED ? gr_ckf_row_bytes (a) : need, bytes);
        else if (need && !data)
            rc = rfail (c, fn, EINVAL, "the buffer for array '%s' is NULL", name);
    }
    if (agree (c, rc) < 0)
        return -1;
    return agree (c, read_array (c, ai, first, count, data, false));
}

int gr_ckpt_shape (gr_ckpt_t *c, const char *name, gr_dtype_t *type, int *ndims,
                   uint64_t dims[GR_CKPT_MAX_DIMS])
{
    uint64_t first, count;
    int ai;

    if (!c || !ndims || !dims)
        return gr__fail (EINVAL, "gr_ckpt_shape: %s is NULL",
                         !c ? "the checkpoint" : !ndims ? "ndims" : "dims");
    if (lookup (c, "gr_ckpt_shape", name, &ai, &first, &count) < 0)
        return -1;
    const gr_ckf_array_t *a = &c->loaded->arrays[ai];
    if (type)
        *type = (gr_dtype_t)a->type;
    *ndims = a->ndims;
    for (int d = 0; d < a->ndims; d++)
        dims[d] = a->dims[d];
    if (a->sharded == GR_CKF_SHARDED)
        dims[0] = count;
    return 0;
}

static const gr_ckf_attr_t *get_attr (gr_ckpt_t *c, const char *fn, const char *name,
                                      int kind)
{
    static const char *const kinds[] = {"i64", "f64", "str"};
    const gr_ckf_attr_t *a;

    if (!c) {
        gr__fail (EINVAL, "%s: the checkpoint is NULL", fn);
        return NULL;
    }
    if (!c->loaded) {
        gr__fail (EPROTO, "%s: no step is loaded (call gr_ckpt_load first)", fn);
        return NULL;
    }
    if (!name || !(a = gr_ckf_find_attr (c->loaded, name))) {
        gr__fail (ENOENT, "%s: step %" PRId64 " has no attribute '%s'", fn, c->loaded->step,
                  name ? name : "(null)");
        return NULL;
    }
    if (a->kind != kind) {
        gr__fail (EINVAL, "%s: attribute '%s' is %s, not %s", fn, name, kinds[a->kind],
                  kinds[kind]);
        return NULL;
    }
    return a;
}

int gr_ckpt_get_i64 (gr_ckpt_t *c, const char *name, int64_t *value)
{
    const gr_ckf_attr_t *a = get_attr (c, "gr_ckpt_get_i64", name, GR_CKF_ATTR_I64);
    if (!a)
        return -1;
    if (!value)
        return gr__fail (EINVAL, "gr_ckpt_get_i64: value is NULL");
    *value = a->i64;
    return 0;
}

int gr_ckpt_get_f64 (gr_ckpt_t *c, const char *name, double *value)
{
    const gr_ckf_attr_t *a = get_attr (c, "gr_ckpt_get_f64", name, GR_CKF_ATTR_F64);
    if (!a)
        return -1;
    if (!value)
        return gr__fail (EINVAL, "gr_ckpt_get_f64: value is NULL");
    *value = a->f64;
    return 0;
}

int gr_ckpt_get_str (gr_ckpt_t *c, const char *name, char *value, size_t len)
{
    const gr_ckf_attr_t *a = get_attr (c, "gr_ckpt_get_str", name, GR_CKF_ATTR_STR);
    if (!a)
        return -1;
    if (!value || len == 0)
        return gr__fail (EINVAL, "gr_ckpt_get_str: no room for the value");
    snprintf (value, len, "%s", a->str);
    return 0;
}

const char *gr_ckpt_load_report (gr_ckpt_t *c)
{
    return c && c->report ? c->report : "";
}

int gr_ckpt_close (gr_ckpt_t *c)
{
    int rc;

    if (!c)
        return 0;
    rc = gr_ckpt_wait (c);
    unload (c);
    clear_desc (c);
    clear_targets (c);
    free (c->tgts);
    free (c->arrs);
    free (c->attrs);
    gr_ckf_steps_free (c->idx, c->nidx);
    free (c->stage);
    free (c->from);
    free (c->pdir);
    free (c->dir);
    gr_world_destroy (c->world);
    free (c);
    return rc;
}

/* ---- The public entry points, timed for the training metrics ----------- */

int gr_ckpt_save (gr_ckpt_t *c)
{
    double t0 = gr_now ();
    int rc = ckpt_save_timed (c);
    if (rc == 0)
        gr__metrics_ckpt (GR__CKPT_SAVE, gr_now () - t0);
    return rc;
}

int gr_ckpt_wait (gr_ckpt_t *c)
{
    double t0 = gr_now ();
    int rc = ckpt_wait_timed (c);
    if (rc == 0)
        gr__metrics_ckpt (GR__CKPT_WAIT, gr_now () - t0);
    return rc;
}

int gr_ckpt_load (gr_ckpt_t *c, int64_t *step)
{
    double t0 = gr_now ();
    int rc = ckpt_load_timed (c, step);
    if (c)
        clear_targets (c);
    if (rc == 0) {
        gr__metrics_ckpt (GR__CKPT_LOAD, gr_now () - t0);
        if (c->rank == 0)
            gr__metrics_event ("checkpoint_load", *step, gr_now () - t0, c->dir);
    }
    return rc;
}
