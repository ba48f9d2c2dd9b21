/* The checkpoint file format without MPI: records, index and meta round
 * trips, damaged indexes, one rank's HDF5 file written and read back, and
 * verification of damaged files. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "check_main.h"
#include "src/ckpt/ckptfile.h"
#include "src/common/error.h"
#include "src/common/fs.h"
#include "src/common/gtime.h"
#include "src/common/hash.h"

static char dir[64];

static void setup (void)
{
    strcpy (dir, "/tmp/gr-ckf-XXXXXX");
    ck_assert_ptr_nonnull (mkdtemp (dir));
}

static void teardown (void)
{
    char cmd[128];
    snprintf (cmd, sizeof (cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq (system (cmd), 0);
}

/* Strings a person's program can produce. */
static const char *hostile[] = {
    "", "-", "\"", "two words", "new\nline", "100%", "%41", "caf\xc3\xa9 \xf0\x9f\x9a\x80",
    "tab\there", "back\\slash",
};
#define NHOSTILE (sizeof (hostile) / sizeof (hostile[0]))

/* A step of 2 ranks, per-rank layout, without files: a sharded f32
 * [5, 3] split 3 + 2, a sharded i64 [4] split unevenly 1 + 3, a
 * replicated f64 [2, 2] and a replicated scalar bf16. */
static gr_ckf_step_t *make_step (int64_t step)
{
    gr_ckf_step_t *s = gr_ckf_step_new (step, 2, GR_CKF_PER_RANK);
    uint64_t d1[2] = {0, 3}, r1[2] = {3, 2};
    uint64_t d2[1] = {0}, r2[2] = {1, 3};
    uint64_t d3[2] = {2, 2};

    ck_assert_ptr_nonnull (s);
    s->time = 1700000000.5;
    ck_assert_int_eq (gr_ckf_step_add_array (s, "w1", GR_CKF_F32, GR_CKF_SHARDED, 2, d1, r1), 0);
    ck_assert_int_eq (gr_ckf_step_add_array (s, "ids x", GR_CKF_I64, GR_CKF_SHARDED, 1, d2, r2),
                      0);
    ck_assert_int_eq (gr_ckf_step_add_array (s, "bias", GR_CKF_F64, GR_CKF_REPLICATED, 2, d3,
                                             NULL), 0);
    ck_assert_int_eq (gr_ckf_step_add_array (s, "scale", GR_CKF_BF16, GR_CKF_REPLICATED, 0,
                                             NULL, NULL), 0);
    gr_ckf_attr_t a = {.name = "epoch", .kind = GR_CKF_ATTR_I64, .i64 = -7};
    ck_assert_int_eq (gr_ckf_step_add_attr (s, &a), 0);
    a = (gr_ckf_attr_t){.name = "lr", .kind = GR_CKF_ATTR_F64, .f64 = 0.1};
    ck_assert_int_eq (gr_ckf_step_add_attr (s, &a), 0);
    for (size_t i = 0; i < NHOSTILE; i++) {
        char name[32];
        snprintf (name, sizeof (name), "s%zu %%", i);
        a = (gr_ckf_attr_t){.name = name, .kind = GR_CKF_ATTR_STR, .str = (char *)hostile[i]};
        ck_assert_int_eq (gr_ckf_step_add_attr (s, &a), 0);
    }
    return s;
}

/* Add files with made-up regions, as a save would record them. */
static void add_fake_files (gr_ckf_step_t *s)
{
    for (int r = 0; r < 2; r++) {
        gr_ckf_file_t f = {.size = 100000, .crc = 0x1234abcdu + (uint32_t)r};
        char name[32];
        gr_ckf_rank_file (name, sizeof (name), r);
        f.name = name;
        uint64_t off = 4096;
        for (size_t i = 0; i < s->narrays; i++) {
            gr_ckf_array_t *a = &s->arrays[i];
            int slab = a->sharded == GR_CKF_SHARDED ? r : -1;
            if (slab < 0 && r != 0)
                continue;
            uint64_t size = slab < 0 ? gr_ckf_array_bytes (a) : a->rows[r] * gr_ckf_row_bytes (a);
            ck_assert_int_eq (gr_ckf_file_add_region (&f, (int)i, slab, off, size,
                                                      0xdead0000u + (uint32_t)i), 0);
            off += size + 1000;
        }
        ck_assert_int_eq (gr_ckf_step_add_file (s, &f), r);
        free (f.regions);
    }
}

START_TEST (test_crc_combine)
{
    unsigned char buf[5000];
    gr_rng_t rng;

    gr_rng_seed (&rng, 42);
    for (size_t i = 0; i < sizeof (buf); i++)
        buf[i] = (unsigned char)gr_rng_next (&rng);
    uint32_t whole = gr_crc32c (0, buf, sizeof (buf));
    for (size_t cut = 0; cut <= sizeof (buf); cut += 777) {
        uint32_t a = gr_crc32c (0, buf, cut);
        uint32_t b = gr_crc32c (0, buf + cut, sizeof (buf) - cut);
        ck_assert_uint_eq (gr_ckf_crc32c_combine (a, b, sizeof (buf) - cut), whole);
    }
    ck_assert_uint_eq (gr_ckf_crc32c_combine (whole, 0, 0), whole);
}
END_TEST

START_TEST (test_split)
{
    uint64_t first, count, next = 0;
    /* 10 rows on 4 ranks: 3 3 2 2. */
    for (int r = 0; r < 4; r++) {
        gr_ckf_split (10, 4, r, &first, &count);
        ck_assert_uint_eq (first, next);
        ck_assert_uint_eq (count, r < 2 ? 3 : 2);
        next += count;
    }
    gr_ckf_split (1, 3, 2, &first, &count);
    ck_assert_uint_eq (count, 0);
}
END_TEST

START_TEST (test_record_roundtrip)
{
    gr_ckf_step_t *s = make_step (40), *t;
    gr_error_t err;
    size_t len, len2;

    add_fake_files (s);
    ck_assert_msg (gr_ckf_step_check (s, "test", &err) == 0, "%s", err.text);
    char *text = gr_ckf_step_format (s, &len);
    ck_assert_ptr_nonnull (text);
    ck_assert_ptr_nonnull (strstr (text, "rows ids%20x 1 3\n"));
    ck_assert_ptr_nonnull (strstr (text, "rows w1 even\n"));
    t = gr_ckf_step_parse (text, len, "rec", 1, &err);
    ck_assert_msg (t != NULL, "%s", err.text);
    char *text2 = gr_ckf_step_format (t, &len2);
    ck_assert_str_eq (text, text2);
    for (size_t i = 0; i < NHOSTILE; i++)
        ck_assert_str_eq (t->attrs[2 + i].str, hostile[i]);
    ck_assert_str_eq (t->arrays[1].name, "ids x");
    ck_assert_uint_eq (t->arrays[1].rows[1], 3);
    ck_assert_uint_eq (t->arrays[0].dims[0], 5);
    ck_assert (t->attrs[1].f64 == 0.1);
    ck_assert_int_eq (t->attrs[0].i64, -7);
    free (text);
    free (text2);
    gr_ckf_step_free (s);
    gr_ckf_step_free (t);
}
END_TEST

/* Each bad record fails with its line and a reason. */
START_TEST (test_record_errors)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"step 1\ntime 0\nranks 1\nlayout per-rank\narray a f17 replicated 0\nend\n",
         "rec:5: unknown array type 'f17'"},
        {"step 1\ntime 0\nranks 1\nlayout diagonal\n", "rec:4: expected 'layout per-rank'"},
        {"step 1\ntime 0\nranks 2\nlayout per-rank\narray a f32 sharded 1 4\nend\n",
         "needs a 'rows' line next"},
        {"step 1\ntime 0\nranks 2\nlayout per-rank\narray a f32 sharded 1 4\nrows a 1 2\n"
         "end\n", "add up to 3, not its first dimension 4"},
        {"step 1\ntime 0\nranks 1\nlayout per-rank\n", "has no 'end' line"},
        {"step -3\n", "rec:1: bad step '-3'"},
        {"step 1\ntime 0\nranks 1\nlayout per-rank\nend\n", "lists 0 files"},
        {"step 1\ntime 0\nranks 1\nlayout per-rank\narray a f32 replicated 1 4\n"
         "file rank-00000.h5 100 00000000\ndata a - 90 16 00000000\nend\n",
         "runs past the end of file"},
        {"step 1\ntime 0\nranks 1\nlayout per-rank\narray a f32 replicated 1 4\n"
         "file rank-00000.h5 100 00000000\ndata a - 0 12 00000000\nend\n",
         "has 12 bytes, not the 16"},
        {"step 1\ntime 0\nranks 1\nlayout per-rank\nattr x str noquote\nend\n",
         "bad string value"},
        {"step 1\ntime 0\nranks 1\nlayout per-rank\nattr x i64 1\nattr x i64 2\n"
         "file rank-00000.h5 0 00000000\nend\n", "attribute 'x' is listed twice"},
        {"step 1\ntime 0\nranks 1\nlayout per-rank\narray a f32 replicated 0\n"
         "array a f64 replicated 0\nfile rank-00000.h5 0 00000000\nend\n",
         "array 'a' is listed twice"},
        {"step 1\ntime 0\nranks 1\nlayout per-rank\nfile rank-00000.h5 0 00000000\n"
         "array a f32 replicated 0\nend\n", "rec:6: 'array' after the first 'file' line"},
        /* Rows that wrap around 2^64 to the first dimension (0 bytes a row,
         * so no region shows them up). */
        {"step 1\ntime 0\nranks 2\nlayout shared\narray a f32 sharded 2 0 0\n"
         "rows a 9223372036854775808 9223372036854775808\nfile shared.h5 0 00000000\n"
         "end\n", "the rows of array 'a' add up to more than 2^64"},
        /* A few short lines that would hold 3 x 2^24 row counts. */
        {"step 1\ntime 0\nranks 16777216\nlayout shared\narray a f32 sharded 1 1\n"
         "rows a even\narray b f32 sharded 1 1\nrows b even\narray c f32 sharded 1 1\n"
         "rows c even\nfile shared.h5 0 00000000\nend\n",
         "rec:9: array 'c': more than 33554432 slabs"},
    };
    gr_error_t err;

    for (size_t i = 0; i < sizeof (cases) / sizeof (cases[0]); i++) {
        gr_ckf_step_t *s = gr_ckf_step_parse (cases[i].text, strlen (cases[i].text), "rec", 1,
                                              &err);
        ck_assert_msg (s == NULL, "case %zu parsed", i);
        ck_assert_int_eq (errno, EBADMSG);
        ck_assert_msg (strstr (err.text, cases[i].want), "case %zu: '%s' not in '%s'", i,
                       cases[i].want, err.text);
    }
}
END_TEST

/* A record of many slabs, in either layout, is read and checked in time
 * that grows with its size, not with its square: 300,000 regions in one
 * shared file, 100,000 ranks' files of one region each.  (Both took
 * minutes once.) */
START_TEST (test_large_records)
{
    for (int layout = 0; layout < 2; layout++) {
        int nranks = layout == GR_CKF_SHARED ? 3000 : 100000;
        int narrays = layout == GR_CKF_SHARED ? 100 : 1;
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream (&text, &len);
        ck_assert_ptr_nonnull (f);
        fprintf (f, "step 1\ntime 0\nranks %d\nlayout %s\n", nranks,
                 gr_ckf_layout_name (layout));
        for (int a = 0; a < narrays; a++)
            fprintf (f, "array w%d f32 sharded 1 %d\nrows w%d even\n", a, nranks, a);
        if (layout == GR_CKF_SHARED) {
            fprintf (f, "file shared.h5 %d 00000000\n", 4 * nranks * narrays);
            for (int a = 0, off = 0; a < narrays; a++)
                for (int r = 0; r < nranks; r++, off += 4)
                    fprintf (f, "data w%d %d %d 4 00000000\n", a, r, off);
        }
        else {
            for (int r = 0; r < nranks; r++)
                fprintf (f, "file rank-%05d.h5 4 00000000\ndata w0 %d 0 4 00000000\n", r,
                         r);
        }
        fprintf (f, "end\n");
        ck_assert_int_eq (fclose (f), 0);

        gr_error_t err;
        double t0 = gr_now ();
        gr_ckf_step_t *s = gr_ckf_step_parse (text, len, "big", 1, &err);
        double t = gr_now () - t0;
        ck_assert_msg (s != NULL, "%s", err.text);
        printf ("# %s: %d ranks x %d arrays (%.1f MB) parsed and checked in %.2f s\n",
                gr_ckf_layout_name (layout), nranks, narrays, len / 1e6, t);
        ck_assert_msg (t < 20 * gr_test_time_scale (), "%.1f s", t);
        gr_ckf_step_free (s);
        free (text);
    }
}
END_TEST

START_TEST (test_index_roundtrip)
{
    gr_ckf_step_t *steps[2] = {make_step (10), make_step (20)}, **back;
    gr_error_t err;
    size_t n;

    add_fake_files (steps[0]);
    add_fake_files (steps[1]);
    ck_assert_msg (gr_ckf_index_write (dir, steps, 2, &err) == 0, "%s", err.text);
    ck_assert_msg (gr_ckf_index_read (dir, &back, &n, &err) == 0, "%s", err.text);
    ck_assert_uint_eq (n, 2);
    ck_assert_int_eq (back[1]->step, 20);
    for (int i = 0; i < 2; i++) {
        char *a = gr_ckf_step_format (steps[i], NULL), *b = gr_ckf_step_format (back[i], NULL);
        ck_assert_str_eq (a, b);
        free (a);
        free (b);
    }
    gr_ckf_steps_free (back, n);

    /* Meta of one step. */
    ck_assert_int_eq (gr_ckf_meta_write (dir, steps[0], &err), 0);
    gr_ckf_step_t *m = gr_ckf_meta_read (dir, &err);
    ck_assert_msg (m != NULL, "%s", err.text);
    ck_assert_int_eq (m->step, 10);
    gr_ckf_step_free (m);
    gr_ckf_step_free (steps[0]);
    gr_ckf_step_free (steps[1]);
}
END_TEST

static void flip_byte (const char *path, off_t off)
{
    int fd = open (path, O_RDWR);
    unsigned char c;
    ck_assert_int_ge (fd, 0);
    ck_assert_int_eq (pread (fd, &c, 1, off), 1);
    c ^= 0x10;
    ck_assert_int_eq (pwrite (fd, &c, 1, off), 1);
    close (fd);
}

START_TEST (test_index_damaged)
{
    gr_ckf_step_t *s = make_step (10), **back = NULL;
    gr_error_t err;
    char path[128];
    size_t n;
    struct stat st;

    add_fake_files (s);
    snprintf (path, sizeof (path), "%s/index", dir);
    ck_assert_int_eq (gr_ckf_index_read (dir, &back, &n, &err), -1);
    ck_assert_int_eq (errno, ENOENT);
    ck_assert_ptr_nonnull (strstr (err.text, "no such file"));

    ck_assert_int_eq (gr_ckf_index_write (dir, &s, 1, &err), 0);
    flip_byte (path, 40);
    ck_assert_int_eq (gr_ckf_index_read (dir, &back, &n, &err), -1);
    ck_assert_int_eq (errno, EBADMSG);
    ck_assert_msg (strstr (err.text, "index: damaged: checksum mismatch"), "%s", err.text);

    ck_assert_int_eq (gr_ckf_index_write (dir, &s, 1, &err), 0);
    ck_assert_int_eq (stat (path, &st), 0);
    ck_assert_int_eq (truncate (path, st.st_size - 20), 0);
    ck_assert_int_eq (gr_ckf_index_read (dir, &back, &n, &err), -1);
    ck_assert_int_eq (errno, EBADMSG);
    ck_assert_msg (strstr (err.text, "no checksum line"), "%s", err.text);

    /* A meta is not an index. */
    ck_assert_int_eq (gr_ckf_meta_write (dir, s, &err), 0);
    ck_assert_int_eq (unlink (path), 0);
    char meta[128];
    snprintf (meta, sizeof (meta), "%s/meta", dir);
    ck_assert_int_eq (rename (meta, path), 0);
    ck_assert_int_eq (gr_ckf_index_read (dir, &back, &n, &err), -1);
    ck_assert_msg (strstr (err.text, "not a gridrun checkpoint file"), "%s", err.text);
    gr_ckf_step_free (s);
}
END_TEST

/* Fill the arrays of make_step with a pattern for rank r. */
static void *fill (const gr_ckf_step_t *s, size_t i, int r)
{
    const gr_ckf_array_t *a = &s->arrays[i];
    uint64_t bytes = a->sharded == GR_CKF_SHARDED ? a->rows[r] * gr_ckf_row_bytes (a)
                                                  : gr_ckf_array_bytes (a);
    unsigned char *p = malloc (bytes ? bytes : 1);
    for (uint64_t k = 0; k < bytes; k++)
        p[k] = (unsigned char)(k * 7 + i * 31 + (uint64_t)r * 101);
    return p;
}

/* Write both ranks' files of make_step into DIR; the step gets them. */
static gr_ckf_step_t *write_step (void)
{
    gr_ckf_step_t *s = make_step (40);
    char path[128], err[512];

    for (int r = 0; r < 2; r++) {
        void *data[4];
        gr_ckf_file_t f;
        char name[32];
        for (size_t i = 0; i < 4; i++)
            data[i] = fill (s, i, r);
        gr_ckf_rank_file (name, sizeof (name), r);
        snprintf (path, sizeof (path), "%s/%s", dir, name);
        ck_assert_msg (gr_ckf_write_rank_file (path, s, r, (const void *const *)data, &f,
                                               err, sizeof (err)) == 0, "%s", err);
        f.name = strdup (name);
        ck_assert_int_eq (gr_ckf_step_add_file (s, &f), r);
        gr_ckf_file_clear (&f);
        for (size_t i = 0; i < 4; i++)
            free (data[i]);
    }
    return s;
}

START_TEST (test_write_and_verify)
{
    gr_ckf_step_t *s = write_step ();
    gr_error_t err;
    char path[128], why[1024];

    ck_assert_msg (gr_ckf_step_check (s, "written", &err) == 0, "%s", err.text);
    for (int r = 0; r < 2; r++) {
        snprintf (path, sizeof (path), "%s/%s", dir, s->files[r].name);
        /* The file checksum is of the file's bytes. */
        char *bytes;
        size_t len;
        ck_assert_int_eq (gr_read_file (path, 1 << 20, &bytes, &len, NULL), 0);
        ck_assert_uint_eq (len, s->files[r].size);
        ck_assert_uint_eq (gr_crc32c (0, bytes, len), s->files[r].crc);
        free (bytes);
        ck_assert_msg (gr_ckf_verify_file (path, s, &s->files[r], NULL, true, why,
                                           sizeof (why)) == 0, "%s", why);
        ck_assert_msg (gr_ckf_check_h5 (path, s, r, why, sizeof (why)) == 0, "%s", why);
    }

    /* HDF5 reads back what was written, with the gridrun attributes. */
    snprintf (path, sizeof (path), "%s/rank-00001.h5", dir);
    hid_t f = H5Fopen (path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_int_ge (f, 0);
    hid_t ds = H5Dopen2 (f, "ids x", H5P_DEFAULT);
    ck_assert_int_ge (ds, 0);
    int64_t ids[3];
    ck_assert_int_ge (H5Dread (ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids), 0);
    unsigned char *want = fill (s, 1, 1);
    ck_assert_int_eq (memcmp (ids, want, sizeof (ids)), 0);
    free (want);
    uint64_t off;
    hid_t at = H5Aopen (ds, "row_offset", H5P_DEFAULT);
    ck_assert_int_ge (H5Aread (at, H5T_NATIVE_UINT64, &off), 0);
    ck_assert_uint_eq (off, 1);
    H5Aclose (at);
    H5Dclose (ds);
    /* Rank 1 holds no replicated arrays. */
    ck_assert_int_le (H5Lexists (f, "bias", H5P_DEFAULT), 0);
    H5Fclose (f);
    gr_ckf_step_free (s);
}
END_TEST

START_TEST (test_verify_damage)
{
    gr_ckf_step_t *s = write_step ();
    char path[128], why[1024];
    const gr_ckf_file_t *f = &s->files[0];
    int ai = gr_ckf_find_array (s, "bias");
    const gr_ckf_region_t *g = NULL;

    for (size_t k = 0; k < f->nregions; k++)
        if (f->regions[k].array == ai)
            g = &f->regions[k];
    ck_assert_ptr_nonnull (g);
    snprintf (path, sizeof (path), "%s/%s", dir, f->name);

    /* A flipped bit in a dataset names the dataset, and only the
     * reader of that dataset sees it. */
    flip_byte (path, (off_t)g->offset + 3);
    ck_assert_int_eq (gr_ckf_verify_file (path, s, f, NULL, true, why, sizeof (why)), 1);
    ck_assert_str_eq (why, "checksum mismatch in dataset 'bias'");
    bool want[8] = {false};
    ck_assert_int_eq (gr_ckf_verify_file (path, s, f, want, true, why, sizeof (why)), 0);
    flip_byte (path, (off_t)g->offset + 3);

    /* In the metadata (the superblock's first bytes after the signature). */
    flip_byte (path, 9);
    ck_assert_int_eq (gr_ckf_verify_file (path, s, f, NULL, true, why, sizeof (why)), 1);
    ck_assert_msg (strstr (why, "checksum mismatch in the HDF5 metadata"), "%s", why);
    flip_byte (path, 9);
    ck_assert_int_eq (gr_ckf_verify_file (path, s, f, NULL, true, why, sizeof (why)), 0);

    ck_assert_int_eq (truncate (path, 1000), 0);
    ck_assert_int_eq (gr_ckf_verify_file (path, s, f, NULL, true, why, sizeof (why)), 1);
    ck_assert_msg (strstr (why, "truncated (1000 of "), "%s", why);
    ck_assert_int_eq (gr_ckf_check_h5 (path, s, 0, why, sizeof (why)), 1);

    ck_assert_int_eq (unlink (path), 0);
    ck_assert_int_eq (gr_ckf_verify_file (path, s, f, NULL, true, why, sizeof (why)), 1);
    ck_assert_str_eq (why, "missing");

    /* Not HDF5 at all. */
    ck_assert_int_eq (gr_write_file_atomic (path, "hello", 5, 0600, NULL), 0);
    ck_assert_int_eq (gr_ckf_check_h5 (path, s, 0, why, sizeof (why)), 1);
    ck_assert_str_eq (why, "not an HDF5 file");
    gr_ckf_step_free (s);
}
END_TEST

/* The reader across chunk boundaries at unaligned offsets: a 9 MiB file
 * with one region of 8 MiB at byte 5000, verified (copying part of the
 * region as it goes), copied from, damaged,
 * and cut short after it was opened (an error, not SIGBUS). */
START_TEST (test_reader)
{
    gr_ckf_step_t *s = make_step (50);
    const uint64_t size = (9 << 20) + 123, off = 5000, len = (8 << 20) + 77;
    unsigned char *bytes = malloc (size), *back = malloc (len);
    gr_ckf_file_t f = {.name = strdup ("rank-00000.h5"), .size = size};
    gr_ckf_reader_t *r;
    char path[128], why[1024];
    gr_rng_t rng;

    ck_assert_ptr_nonnull (bytes);
    ck_assert_ptr_nonnull (back);
    ck_assert_ptr_nonnull (f.name);
    gr_rng_seed (&rng, 7);
    for (uint64_t i = 0; i < size; i++)
        bytes[i] = (unsigned char)gr_rng_next (&rng);
    snprintf (path, sizeof (path), "%s/%s", dir, f.name);
    ck_assert_int_eq (gr_write_file_atomic (path, bytes, size, 0600, NULL), 0);
    f.crc = gr_crc32c (0, bytes, size);
    ck_assert_int_eq (gr_ckf_file_add_region (&f, 0, 0, off, len,
                                              gr_crc32c (0, bytes + off, len)), 0);

    ck_assert_int_eq (gr_ckf_reader_open (path, size, &r, why, sizeof (why)), 0);
    /* Verified, and bytes [lo, hi) of the region copied on the way: across
     * chunks and cache blocks, at odd offsets, nothing written around. */
    const uint64_t lo = 300001, hi = len - 12345;
    memset (back, 0x5a, len);
    gr_ckf_copy_t cp = {.dst = back + 1, .lo = lo, .hi = hi};
    ck_assert_msg (gr_ckf_reader_verify (r, s, &f, NULL, &cp, true, why, sizeof (why)) == 0,
                   "%s", why);
    ck_assert_int_eq (memcmp (back + 1, bytes + off + lo, hi - lo), 0);
    ck_assert_int_eq (back[0], 0x5a);
    ck_assert_int_eq (back[hi - lo + 1], 0x5a);
    ck_assert_int_eq (gr_ckf_reader_copy (r, back, len, off), 0);
    ck_assert_int_eq (memcmp (back, bytes + off, len), 0);
    ck_assert_int_eq (gr_ckf_reader_copy (r, back, 3, size - 2), -1);
    ck_assert_int_eq (errno, EINVAL);

    /* The same through pread, as where files cannot be mapped. */
    gr_ckf_reader_t *u;
    ck_assert_int_eq (gr_ckf_reader_open (path, size, &u, why, sizeof (why)), 0);
    gr_ckf_reader_unmap (u);
    memset (back, 0x5a, len);
    ck_assert_msg (gr_ckf_reader_verify (u, s, &f, NULL, &cp, true, why, sizeof (why)) == 0,
                   "%s", why);
    ck_assert_int_eq (memcmp (back + 1, bytes + off + lo, hi - lo), 0);
    ck_assert_int_eq (back[0], 0x5a);
    ck_assert_int_eq (back[hi - lo + 1], 0x5a);
    memset (back, 0, len);
    ck_assert_int_eq (gr_ckf_reader_copy (u, back, len, off), 0);
    ck_assert_int_eq (memcmp (back, bytes + off, len), 0);
    gr_ckf_reader_close (u);

    flip_byte (path, (off_t)(6 << 20) + 1);
    ck_assert_int_eq (gr_ckf_reader_verify (r, s, &f, NULL, NULL, true, why, sizeof (why)), 1);
    ck_assert_str_eq (why, "checksum mismatch in dataset 'w1'");

    ck_assert_int_eq (truncate (path, 1000), 0);
    ck_assert_int_eq (gr_ckf_reader_copy (r, back, len, off), -1);
    ck_assert_int_eq (errno, EIO);
    gr_ckf_reader_close (r);
    ck_assert_int_eq (gr_ckf_reader_open (path, size, &r, why, sizeof (why)), 1);
    ck_assert_ptr_null (r);
    ck_assert_msg (strstr (why, "truncated (1000 of "), "%s", why);

    gr_ckf_file_clear (&f);
    gr_ckf_step_free (s);
    free (bytes);
    free (back);
}
END_TEST

/* The catalog: index and step directories, a missing index, a damaged
 * meta, an uncommitted step. */
START_TEST (test_catalog)
{
    gr_ckf_step_t *s[3] = {make_step (10), make_step (20), make_step (30)};
    gr_error_t err;
    char sd[256], path[300];

    for (int i = 0; i < 3; i++) {
        add_fake_files (s[i]);
        ck_assert_int_eq (gr_ckf_step_dir (sd, sizeof (sd), dir, s[i]->step), 0);
        ck_assert_int_eq (mkdir (sd, 0700), 0);
        ck_assert_int_eq (gr_ckf_meta_write (sd, s[i], &err), 0);
    }
    /* The index lists 10 and 20: 30 was renamed, but its index not yet
     * written. */
    ck_assert_int_eq (gr_ckf_index_write (dir, s, 2, &err), 0);
    ck_assert_int_eq (gr_ckf_tmp_dir (sd, sizeof (sd), dir, 40), 0);
    ck_assert_int_eq (mkdir (sd, 0700), 0);
    snprintf (path, sizeof (path), "%s/step-junk", dir);
    ck_assert_int_eq (mkdir (path, 0700), 0);
    /* Step 20's meta is damaged: the index's record stands in. */
    snprintf (path, sizeof (path), "%s/step-00000020/meta", dir);
    flip_byte (path, 30);

    gr_ckf_catalog_t *c = gr_ckf_catalog_load (dir, &err);
    ck_assert_msg (c != NULL, "%s", err.text);
    ck_assert (c->have_index);
    ck_assert_uint_eq (c->n, 3);
    ck_assert_int_eq (c->entries[0].step, 30);
    ck_assert (!c->entries[0].in_index && c->entries[0].from_meta);
    ck_assert_int_eq (c->entries[1].step, 20);
    ck_assert (c->entries[1].rec && !c->entries[1].from_meta);
    ck_assert_msg (strstr (c->entries[1].problem, "meta: damaged: checksum mismatch")
                       && strstr (c->entries[1].problem, "; using the index's record"),
                   "%s", c->entries[1].problem);
    ck_assert_uint_eq (c->ntmp, 1);
    ck_assert_int_eq (c->tmp_steps[0], 40);
    gr_ckf_catalog_free (c);

    /* Without the index, the metas alone. */
    snprintf (path, sizeof (path), "%s/index", dir);
    ck_assert_int_eq (unlink (path), 0);
    c = gr_ckf_catalog_load (dir, &err);
    ck_assert_ptr_nonnull (c);
    ck_assert (!c->have_index);
    ck_assert_ptr_nonnull (strstr (c->index_problem, "no such file"));
    ck_assert_uint_eq (c->n, 3);
    ck_assert_ptr_null (c->entries[1].rec);
    ck_assert_ptr_nonnull (c->entries[2].rec);
    gr_ckf_catalog_free (c);

    ck_assert_int_eq (gr_ckf_step_dir (sd, sizeof (sd), dir, 30), 0);
    ck_assert_int_eq (gr_ckf_remove_dir (sd), 0);
    ck_assert_int_eq (access (sd, F_OK), -1);
    ck_assert_ptr_null (gr_ckf_catalog_load ("/nonexistent/ckpt", &err));
    ck_assert_ptr_nonnull (strstr (err.text, "cannot read checkpoint directory"));
    for (int i = 0; i < 3; i++)
        gr_ckf_step_free (s[i]);
}
END_TEST

START_TEST (test_names)
{
    ck_assert_ptr_null (gr_ckf_name_problem ("layer1.weight"));
    ck_assert_ptr_null (gr_ckf_name_problem ("caf\xc3\xa9 x"));
    ck_assert_ptr_nonnull (gr_ckf_name_problem (""));
    ck_assert_ptr_nonnull (gr_ckf_name_problem ("a/b"));
    ck_assert_ptr_nonnull (gr_ckf_name_problem (".."));
    ck_assert_ptr_nonnull (gr_ckf_name_problem ("a\nb"));
    char sd[32];
    ck_assert_int_eq (gr_ckf_step_dir (sd, sizeof (sd), "d", 7), 0);
    ck_assert_str_eq (sd, "d/step-00000007");
    ck_assert_int_eq (gr_ckf_step_dir (sd, 8, "d", 7), -1);
}
END_TEST

static Suite *suite (void)
{
    Suite *s = suite_create ("ckptfile");
    TCase *tc = tcase_create ("core");
    /* test_large_records builds and reads records of 10 MB. */
    tcase_set_timeout (tc, 60);
    tcase_add_checked_fixture (tc, setup, teardown);
    tcase_add_test (tc, test_crc_combine);
    tcase_add_test (tc, test_split);
    tcase_add_test (tc, test_record_roundtrip);
    tcase_add_test (tc, test_record_errors);
    tcase_add_test (tc, test_large_records);
    tcase_add_test (tc, test_index_roundtrip);
    tcase_add_test (tc, test_index_damaged);
    tcase_add_test (tc, test_write_and_verify);
    tcase_add_test (tc, test_verify_damage);
    tcase_add_test (tc, test_reader);
    tcase_add_test (tc, test_catalog);
    tcase_add_test (tc, test_names);
    suite_add_tcase (s, tc);
    return s;
}

int main (void)
{
    return gr_check_main (suite ());
}
