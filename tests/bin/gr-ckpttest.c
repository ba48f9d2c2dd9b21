/* gr-ckpttest: libgridrun's checkpoints under mpirun (or without MPI, in
 * torchrun's environment), driven by the integration tests (t0210-ckpt.sh,
 * t0211-ckpt-damage.sh, t0233-group-lib.sh).
 *
 *   gr-ckpttest DIR save STEP[,STEP...] [options]   save these steps
 *   gr-ckpttest DIR load [--expect STEP] [--report TEXT]... [--into]
 *                                                   load, check (with --into,
 *                                                   the load fills targets too)
 *   gr-ckpttest DIR misuse                          API errors
 *
 * options: --layout per-rank|shared, --keep K, --async, --partner DIR
 * (may hold %r), --rows N (global rows of the sharded arrays, default 10),
 * --uneven (save slabs of unequal size).
 *
 * Every value is a function of (step, global row, column), so a load on
 * any number of ranks can check what it reads.  Exit 0 when all is as
 * expected, 1 otherwise (with what was wrong on stderr). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gridrun.h"

static int rank, size;
static int failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf (stderr, "gr-ckpttest: rank %d: ", rank);                  \
            fprintf (stderr, __VA_ARGS__);                                     \
            fprintf (stderr, "\n");                                            \
            failures++;                                                        \
        }                                                                      \
    } while (0)

static struct {
    gr_ckpt_opts_t o;
    uint64_t rows;
    int uneven;
    int64_t expect;
    const char *reports[8];
    int nreports;
    int into;
} opt = {.o = {.layout = GR_CKPT_PER_RANK, .keep = 3}, .rows = 10, .expect = -2};

/* The arrays: sharded ones split along dim 0, replicated ones whole. */
enum { W1, IDS, EMB, HALF, CNT, BIAS, SCALAR, EMPTY, NARR };
static const struct {
    const char *name;
    gr_dtype_t type;
    int layout;
    int ndims;
    uint64_t cols;   /* dims[1] (sharded) */
} arrs[NARR] = {
    {"w1", GR_F32, GR_CKPT_SHARDED, 2, 4},
    {"ids", GR_I64, GR_CKPT_SHARDED, 1, 1},
    {"emb.weight", GR_BF16, GR_CKPT_SHARDED, 2, 3},
    {"h 16", GR_F16, GR_CKPT_SHARDED, 2, 2},
    {"cnt", GR_I32, GR_CKPT_REPLICATED, 1, 0},
    {"bias", GR_F64, GR_CKPT_REPLICATED, 2, 0},
    {"scalar", GR_F64, GR_CKPT_REPLICATED, 0, 0},
    {"empty", GR_F32, GR_CKPT_REPLICATED, 1, 0},
};

/* Value k (row-major within row grow) of array i at step. */
static double value (int i, int64_t step, uint64_t grow, uint64_t col)
{
    return (double)(step * 1000 + (int64_t)grow * 10 + (int64_t)col + i);
}

static void put (void *buf, gr_dtype_t t, uint64_t k, double v)
{
    switch (t) {
        case GR_F32:
            ((float *)buf)[k] = (float)v;
            break;
        case GR_F64:
            ((double *)buf)[k] = v;
            break;
        case GR_I32:
            ((int32_t *)buf)[k] = (int32_t)v;
            break;
        case GR_I64:
            ((int64_t *)buf)[k] = (int64_t)v;
            break;
        default: /* 16 bits of pattern */
            ((uint16_t *)buf)[k] = (uint16_t)((int64_t)v * 7 + 3);
            break;
    }
}

static void dims_of (int i, uint64_t rows, uint64_t *dims)
{
    if (arrs[i].layout == GR_CKPT_SHARDED) {
        dims[0] = rows;
        dims[1] = arrs[i].cols;
    } else if (i == CNT) {
        dims[0] = 3;
    } else if (i == BIAS) {
        dims[0] = 2;
        dims[1] = 5;
    } else {
        dims[0] = 0;
    }
}

static uint64_t elems (int i, const uint64_t *dims)
{
    uint64_t n = 1;
    for (int d = 0; d < arrs[i].ndims; d++)
        n *= dims[d];
    return n;
}

/* Fill array i for global rows [first, first + n) at step. */
static void *make (int i, int64_t step, uint64_t first, uint64_t n, uint64_t *count)
{
    uint64_t dims[2];
    dims_of (i, n, dims);
    uint64_t ne = elems (i, dims), per = arrs[i].layout == GR_CKPT_SHARDED
                                             ? (arrs[i].ndims > 1 ? arrs[i].cols : 1)
                                             : ne;
    void *buf = calloc (ne ? ne : 1, 8);
    for (uint64_t k = 0; k < ne; k++) {
        uint64_t row = arrs[i].layout == GR_CKPT_SHARDED ? first + k / per : 0;
        uint64_t col = arrs[i].layout == GR_CKPT_SHARDED ? k % per : k;
        put (buf, arrs[i].type, k, value (i, step, row, col));
    }
    *count = ne;
    return buf;
}

/* Rows this rank saves: even, or (uneven) rank r takes r + 1 shares. */
static void my_rows (uint64_t *first, uint64_t *n)
{
    if (!opt.uneven) {
        uint64_t base = opt.rows / (uint64_t)size, extra = opt.rows % (uint64_t)size;
        uint64_t r = (uint64_t)rank;
        *first = r * base + (r < extra ? r : extra);
        *n = base + (r < extra);
        return;
    }
    uint64_t total = (uint64_t)size * (uint64_t)(size + 1) / 2;
    uint64_t w0 = (uint64_t)rank * (uint64_t)(rank + 1) / 2, w1 = w0 + (uint64_t)rank + 1;
    *first = opt.rows * w0 / total;
    *n = opt.rows * w1 / total - *first;
}

static int save_steps (const char *dir, const char *list)
{
    gr_ckpt_t *c = gr_ckpt_open (dir, &opt.o);
    void *bufs[NARR] = {NULL};
    char *copy = strdup (list), *save = NULL;

    if (!c) {
        fprintf (stderr, "gr-ckpttest: rank %d: %s\n", rank, gr_last_error ());
        return 1;
    }
    for (char *t = strtok_r (copy, ",", &save); t; t = strtok_r (NULL, ",", &save)) {
        int64_t step = strtoll (t, NULL, 10);
        uint64_t first, n, count[NARR];
        my_rows (&first, &n);
        CHECK (gr_ckpt_begin (c, step) == 0, "begin: %s", gr_last_error ());
        for (int i = 0; i < NARR; i++) {
            uint64_t dims[2];
            bool sh = arrs[i].layout == GR_CKPT_SHARDED;
            free (bufs[i]);
            bufs[i] = make (i, step, sh ? first : 0, sh ? n : 0, &count[i]);
            dims_of (i, n, dims);
            CHECK (gr_ckpt_add (c, arrs[i].name, arrs[i].type, arrs[i].ndims, dims, bufs[i],
                                arrs[i].layout) == 0, "add %s: %s", arrs[i].name,
                   gr_last_error ());
        }
        char note[64];
        snprintf (note, sizeof (note), "step %" PRId64 " \"quoted\" 100%%", step);
        CHECK (gr_ckpt_attr_i64 (c, "epoch", step) == 0, "attr: %s", gr_last_error ());
        CHECK (gr_ckpt_attr_f64 (c, "lr", 0.1 * (double)step) == 0, "attr: %s",
               gr_last_error ());
        CHECK (gr_ckpt_attr_str (c, "note", note) == 0, "attr: %s", gr_last_error ());
        if (gr_ckpt_save (c) < 0) {
            fprintf (stderr, "gr-ckpttest: rank %d: save %" PRId64 ": %s\n", rank, step,
                     gr_last_error ());
            failures++;
        }
        /* An async save has its own copy: scribbling now changes nothing. */
        for (int i = 0; opt.o.async && i < NARR; i++)
            memset (bufs[i], 0xab, (count[i] ? count[i] : 1) * gr_dtype_size (arrs[i].type));
    }
    if (gr_ckpt_close (c) < 0) {
        fprintf (stderr, "gr-ckpttest: rank %d: close: %s\n", rank, gr_last_error ());
        failures++;
    }
    for (int i = 0; i < NARR; i++)
        free (bufs[i]);
    free (copy);
    return 0;
}

/* This rank's part of array i when loaded: rows [*first, *first + *n)
 * of a sharded one (the even split on this run's size, whatever the
 * save's), and the dims. */
static void part_of (int i, uint64_t *first, uint64_t *n, uint64_t *gdims)
{
    *first = *n = 0;
    dims_of (i, 0, gdims);
    if (arrs[i].layout == GR_CKPT_SHARDED) {
        uint64_t base = opt.rows / (uint64_t)size, extra = opt.rows % (uint64_t)size;
        uint64_t r = (uint64_t)rank;
        *first = r * base + (r < extra ? r : extra);
        *n = base + (r < extra);
        dims_of (i, *n, gdims);
    }
}

static void check_array (gr_ckpt_t *c, int i, int64_t step)
{
    gr_dtype_t t;
    int nd;
    uint64_t dims[GR_CKPT_MAX_DIMS], gdims[2], first, n, ne;

    CHECK (gr_ckpt_shape (c, arrs[i].name, &t, &nd, dims) == 0, "shape %s: %s", arrs[i].name,
           gr_last_error ());
    part_of (i, &first, &n, gdims);
    CHECK (t == arrs[i].type && nd == arrs[i].ndims, "shape of %s: type %d ndims %d", arrs[i].name,
           (int)t, nd);
    for (int d = 0; d < nd && d < 2; d++)
        CHECK (dims[d] == gdims[d], "dim %d of %s is %" PRIu64 ", not %" PRIu64, d,
               arrs[i].name, dims[d], gdims[d]);
    void *want = make (i, step, first, n, &ne);
    size_t bytes = ne * gr_dtype_size (arrs[i].type);
    void *got = calloc (ne ? ne : 1, 8);
    CHECK (gr_ckpt_read (c, arrs[i].name, got, bytes) == 0, "read %s: %s", arrs[i].name,
           gr_last_error ());
    CHECK (memcmp (got, want, bytes) == 0, "array %s of step %" PRId64 " has other values",
           arrs[i].name, step);
    free (want);
    free (got);
}

static int load (const char *dir)
{
    gr_ckpt_t *c = gr_ckpt_open (dir, &opt.o);
    int64_t step = -5, epoch = -1;
    double lr = 0;
    char note[64], want[64];

    if (!c) {
        fprintf (stderr, "gr-ckpttest: rank %d: %s\n", rank, gr_last_error ());
        return 1;
    }
    /* With --into, the load fills buffers of this rank's part of every
     * array, first set to something else. */
    void *tgt[NARR] = {0};
    for (int i = 0; i < NARR && opt.into; i++) {
        uint64_t first, n, ne, gdims[2];
        part_of (i, &first, &n, gdims);
        free (make (i, 0, first, n, &ne));
        tgt[i] = malloc ((ne ? ne : 1) * 8);
        memset (tgt[i], 0xab, (ne ? ne : 1) * 8);
        CHECK (gr_ckpt_target (c, arrs[i].name, tgt[i], ne * gr_dtype_size (arrs[i].type)) == 0,
               "target %s: %s", arrs[i].name, gr_last_error ());
    }
    int rc = gr_ckpt_load (c, &step);
    const char *report = gr_ckpt_load_report (c);
    if (rank == 0) {
        printf ("loaded step %" PRId64 "\n", rc == 0 ? step : -1);
        printf ("report: %s\n", report);
        if (rc < 0)
            printf ("error: %s\n", gr_last_error ());
        fflush (stdout);
    }
    for (int i = 0; i < opt.nreports; i++)
        CHECK (strstr (report, opt.reports[i]), "the report lacks '%s': %s", opt.reports[i],
               report);
    if (opt.expect != -2)
        CHECK ((rc == 0 ? step : -1) == opt.expect, "loaded step %" PRId64 ", not %" PRId64,
               rc == 0 ? step : -1, opt.expect);
    if (rc == 0) {
        for (int i = 0; i < NARR; i++)
            check_array (c, i, step);
        for (int i = 0; i < NARR && opt.into; i++) {
            uint64_t first, n, ne, gdims[2];
            part_of (i, &first, &n, gdims);
            void *want = make (i, step, first, n, &ne);
            CHECK (memcmp (tgt[i], want, ne * gr_dtype_size (arrs[i].type)) == 0,
                   "target %s holds other values than step %" PRId64 "'s", arrs[i].name, step);
            free (want);
        }
        snprintf (want, sizeof (want), "step %" PRId64 " \"quoted\" 100%%", step);
        CHECK (gr_ckpt_get_i64 (c, "epoch", &epoch) == 0 && epoch == step, "epoch");
        CHECK (gr_ckpt_get_f64 (c, "lr", &lr) == 0 && lr == 0.1 * (double)step, "lr");
        CHECK (gr_ckpt_get_str (c, "note", note, sizeof (note)) == 0
                   && strcmp (note, want) == 0, "note is '%s'", note);
    } else {
        CHECK (errno == ENOENT, "load failed with errno %d, not ENOENT", errno);
    }
    CHECK (gr_ckpt_close (c) == 0, "close: %s", gr_last_error ());
    for (int i = 0; i < NARR; i++)
        free (tgt[i]);
    return 0;
}

/* What the API refuses, and how. */
static int misuse (const char *dir)
{
    gr_ckpt_opts_t bad = {.layout = GR_CKPT_SHARED, .async = 1};
    uint64_t dims[2] = {4, 2};
    float data[8] = {0};
    int64_t step;
    double d;

    CHECK (!gr_ckpt_open (dir, &bad) && errno == ENOTSUP
               && strstr (gr_last_error (), "async saves need the per-rank layout"),
           "shared + async: %s", gr_last_error ());
    bad = (gr_ckpt_opts_t){.layout = GR_CKPT_SHARED, .partner_dir = "/tmp/x"};
    CHECK (!gr_ckpt_open (dir, &bad) && errno == ENOTSUP, "shared + partner: %s",
           gr_last_error ());
    bad = (gr_ckpt_opts_t){.keep = -1};
    CHECK (!gr_ckpt_open (dir, &bad) && errno == EINVAL, "keep -1");

    gr_ckpt_t *c = gr_ckpt_open (dir, &opt.o);
    CHECK (c != NULL, "open: %s", gr_last_error ());
    if (!c)
        return 0;
    CHECK (gr_ckpt_add (c, "x", GR_F32, 1, dims, data, GR_CKPT_SHARDED) < 0 && errno == EPROTO,
           "add before begin");
    CHECK (gr_ckpt_save (c) < 0 && errno == EPROTO, "save before begin");
    CHECK (gr_ckpt_begin (c, 7) == 0, "begin");
    CHECK (gr_ckpt_add (c, "a/b", GR_F32, 1, dims, data, GR_CKPT_SHARDED) < 0
               && errno == EINVAL && strstr (gr_last_error (), "contains '/'"),
           "name a/b: %s", gr_last_error ());
    CHECK (gr_ckpt_add (c, "s", GR_F32, 0, dims, data, GR_CKPT_SHARDED) < 0 && errno == EINVAL,
           "sharded scalar");
    CHECK (gr_ckpt_add (c, "t", (gr_dtype_t)17, 1, dims, data, GR_CKPT_SHARDED) < 0
               && errno == EINVAL, "type 17");
    CHECK (gr_ckpt_add (c, "x", GR_F32, 2, dims, data, GR_CKPT_SHARDED) == 0, "add x: %s",
           gr_last_error ());
    CHECK (gr_ckpt_add (c, "x", GR_F32, 2, dims, data, GR_CKPT_SHARDED) < 0 && errno == EINVAL,
           "x twice");
    CHECK (gr_ckpt_attr_i64 (c, "gridrun_step", 1) < 0 && errno == EINVAL, "reserved attr");
    CHECK (gr_ckpt_attr_f64 (c, "lr", 0.5) == 0, "attr lr");
    CHECK (gr_ckpt_attr_str (c, "s", NULL) < 0 && errno == EINVAL, "NULL string");
    /* Rank 1 describes another step: every rank refuses. */
    if (rank == 1)
        CHECK (gr_ckpt_add (c, "only-on-1", GR_F32, 1, dims, data, GR_CKPT_REPLICATED) == 0,
               "add");
    int rc = gr_ckpt_save (c);
    if (size > 1)
        CHECK (rc < 0 && errno == EINVAL && strstr (gr_last_error (), "describe step 7 "
                                                    "differently"),
               "ranks disagree: rc %d %s", rc, gr_last_error ());
    CHECK (gr_ckpt_read (c, "x", data, sizeof (data)) < 0 && errno == EPROTO, "read unloaded");
    /* A good step, then reads that are wrong. */
    CHECK (gr_ckpt_begin (c, 8) == 0, "begin 8");
    CHECK (gr_ckpt_add (c, "x", GR_F32, 2, dims, data, GR_CKPT_SHARDED) == 0, "add x");
    CHECK (gr_ckpt_attr_f64 (c, "lr", 0.5) == 0, "attr lr");
    CHECK (gr_ckpt_save (c) == 0, "save 8: %s", gr_last_error ());
    CHECK (gr_ckpt_load (c, &step) == 0 && step == 8, "load 8: %s", gr_last_error ());
    CHECK (gr_ckpt_read (c, "x", data, 4) < 0 && errno == EINVAL
               && strstr (gr_last_error (), "the buffer has 4"),
           "small buffer: %s", gr_last_error ());
    CHECK (gr_ckpt_read (c, "nope", data, sizeof (data)) < 0 && errno == ENOENT, "no array");
    CHECK (gr_ckpt_get_i64 (c, "lr", &step) < 0 && errno == EINVAL
               && strstr (gr_last_error (), "is f64, not i64"),
           "lr as i64: %s", gr_last_error ());
    CHECK (gr_ckpt_get_f64 (c, "nope", &d) < 0 && errno == ENOENT, "no attribute");
    /* Targets: refused arguments; a target the step lacks or too small
     * for this rank's part fails the load on every rank, and leaves
     * nothing loaded; targets that differ between ranks; each load
     * forgets them. */
    float big[8];
    CHECK (gr_ckpt_target (c, "a/b", data, sizeof (data)) < 0 && errno == EINVAL, "target a/b");
    CHECK (gr_ckpt_target (c, "x", NULL, 4) < 0 && errno == EINVAL, "target NULL");
    CHECK (gr_ckpt_target (c, "x", big, sizeof (big)) == 0, "target x: %s", gr_last_error ());
    CHECK (gr_ckpt_target (c, "x", big, sizeof (big)) < 0 && errno == EINVAL, "target x twice");
    CHECK (gr_ckpt_target (c, "nope", data, sizeof (data)) == 0, "target nope");
    CHECK (gr_ckpt_load (c, &step) < 0 && errno == ENOENT
               && strstr (gr_last_error (), "has no array 'nope'"),
           "target nope: %s", gr_last_error ());
    CHECK (gr_ckpt_read (c, "x", data, sizeof (data)) < 0 && errno == EPROTO,
           "read after a failed load");
    CHECK (gr_ckpt_target (c, "x", big, 4) == 0, "target x small");
    CHECK (gr_ckpt_load (c, &step) < 0 && errno == EINVAL
               && strstr (gr_last_error (), "the target has 4"),
           "small target: %s", gr_last_error ());
    if (rank == 1)
        CHECK (gr_ckpt_target (c, "x", big, sizeof (big)) == 0, "target x on rank 1");
    rc = gr_ckpt_load (c, &step);
    if (size > 1)
        CHECK (rc < 0 && errno == EINVAL && strstr (gr_last_error (), "name different targets"),
               "targets differ: rc %d %s", rc, gr_last_error ());
    memset (big, 0xab, sizeof (big));
    CHECK (gr_ckpt_target (c, "x", big, sizeof (big)) == 0, "target x again");
    CHECK (gr_ckpt_load (c, &step) == 0 && step == 8, "load into x: %s", gr_last_error ());
    CHECK (gr_ckpt_read (c, "x", data, sizeof (data)) == 0
               && memcmp (data, big, 8 * sizeof (float)) == 0,
           "the target and a read differ");
    CHECK (gr_ckpt_close (c) == 0, "close");
    if (rank == 0)
        printf ("misuse checks done\n");
    return 0;
}

int main (int argc, char **argv)
{
    const char *dir, *cmd, *list = NULL;
    int rc = 0, any;

    if (gr_init (&argc, &argv) < 0) {
        fprintf (stderr, "gr-ckpttest: %s\n", gr_last_error ());
        return 1;
    }
    rank = gr_rank ();
    size = gr_size ();
    if (argc < 3) {
        fprintf (stderr, "usage: gr-ckpttest DIR save STEPS|load|misuse [options]\n");
        gr_finalize ();
        return 2;
    }
    dir = argv[1];
    cmd = argv[2];
    int i = 3;
    if (strcmp (cmd, "save") == 0 && argc > 3)
        list = argv[i++];
    for (; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (strcmp (a, "--layout") == 0 && ++i)
            opt.o.layout = strcmp (v, "shared") == 0 ? GR_CKPT_SHARED : GR_CKPT_PER_RANK;
        else if (strcmp (a, "--keep") == 0 && ++i)
            opt.o.keep = atoi (v);
        else if (strcmp (a, "--async") == 0)
            opt.o.async = 1;
        else if (strcmp (a, "--partner") == 0 && ++i)
            opt.o.partner_dir = v;
        else if (strcmp (a, "--rows") == 0 && ++i)
            opt.rows = strtoull (v, NULL, 10);
        else if (strcmp (a, "--uneven") == 0)
            opt.uneven = 1;
        else if (strcmp (a, "--expect") == 0 && ++i)
            opt.expect = strtoll (v, NULL, 10);
        else if (strcmp (a, "--into") == 0)
            opt.into = 1;
        else if (strcmp (a, "--report") == 0 && ++i && opt.nreports < 8)
            opt.reports[opt.nreports++] = v;
        else {
            fprintf (stderr, "gr-ckpttest: unknown option '%s'\n", a);
            gr_finalize ();
            return 2;
        }
    }
    if (strcmp (cmd, "save") == 0 && list)
        rc = save_steps (dir, list);
    else if (strcmp (cmd, "load") == 0)
        rc = load (dir);
    else if (strcmp (cmd, "misuse") == 0)
        rc = misuse (dir);
    else
        rc = 2;
    int mine = rc || failures;
    if (gr_allreduce (&mine, &any, 1, GR_I32, GR_MAX) < 0)
        any = 1;
    gr_finalize ();
    return rc == 2 ? 2 : any ? 1 : 0;
}
