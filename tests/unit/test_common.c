#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "src/common/error.h"
#include "src/common/fs.h"
#include "src/common/grow.h"
#include "src/common/hash.h"
#include "src/common/hist.h"
#include "src/common/prom.h"
#include "src/common/slurm.h"
#include "src/common/units.h"

START_TEST (test_errprintf)
{
    gr_error_t e;
    errno = EAGAIN;
    ck_assert_int_eq (gr_errprintf (&e, "bad %d", 7), -1);
    ck_assert_str_eq (e.text, "bad 7");
    ck_assert_int_eq (errno, EAGAIN);
    ck_assert_int_eq (gr_errprintf_at (&e, "x.yaml", 3, 9, "oops"), -1);
    ck_assert_str_eq (e.text, "x.yaml:3:9: oops");
    ck_assert_int_eq (gr_errprintf_at (&e, "x.yaml", 3, 0, "oops"), -1);
    ck_assert_str_eq (e.text, "x.yaml:3: oops");
    ck_assert_int_eq (gr_errprintf (NULL, "ignored"), -1);
}
END_TEST

START_TEST (test_durations)
{
    double d;
    ck_assert_int_eq (gr_parse_duration ("90", &d), 0);
    ck_assert_double_eq (d, 90);
    ck_assert_int_eq (gr_parse_duration ("1.5s", &d), 0);
    ck_assert_double_eq (d, 1.5);
    ck_assert_int_eq (gr_parse_duration ("10m", &d), 0);
    ck_assert_double_eq (d, 600);
    ck_assert_int_eq (gr_parse_duration ("1h30m", &d), 0);
    ck_assert_double_eq (d, 5400);
    ck_assert_int_eq (gr_parse_duration ("250ms", &d), 0);
    ck_assert_double_eq_tol (d, 0.25, 1e-12);
    ck_assert_int_eq (gr_parse_duration ("2d", &d), 0);
    ck_assert_double_eq (d, 172800);
    const char *bad[] = {"", "soon", "-1", "5x", "1h30", "m", "1e400", "nan"};
    for (size_t i = 0; i < sizeof (bad) / sizeof (bad[0]); i++) {
        errno = 0;
        ck_assert_msg (gr_parse_duration (bad[i], &d) == -1, "accepted '%s'", bad[i]);
        ck_assert_int_eq (errno, EINVAL);
    }
}
END_TEST

START_TEST (test_sizes)
{
    uint64_t v;
    ck_assert_int_eq (gr_parse_size ("512", &v), 0);
    ck_assert_uint_eq (v, 512);
    ck_assert_int_eq (gr_parse_size ("64K", &v), 0);
    ck_assert_uint_eq (v, 65536);
    ck_assert_int_eq (gr_parse_size ("2G", &v), 0);
    ck_assert_uint_eq (v, 2ull << 30);
    ck_assert_int_eq (gr_parse_size ("1.5GiB", &v), 0);
    ck_assert_uint_eq (v, 3ull << 29);
    ck_assert_int_eq (gr_parse_size ("4mb", &v), 0);
    ck_assert_uint_eq (v, 4ull << 20);
    ck_assert_int_eq (gr_parse_size ("lots", &v), -1);
    ck_assert_int_eq (gr_parse_size ("-1", &v), -1);
    ck_assert_int_eq (gr_parse_size ("3Q", &v), -1);
    ck_assert_int_eq (gr_parse_size ("99999999999T", &v), -1);
    ck_assert_int_eq (gr_parse_u64 ("18446744073709551615", &v), 0);
    ck_assert_uint_eq (v, UINT64_MAX);
    ck_assert_int_eq (gr_parse_u64 ("18446744073709551616", &v), -1);
    ck_assert_int_eq (gr_parse_u64 ("12a", &v), -1);
    ck_assert_int_eq (gr_parse_u64 (" 1", &v), -1);
}
END_TEST

START_TEST (test_deadline)
{
    double d, now = (double)time (NULL);
    ck_assert_int_eq (gr_parse_deadline ("+2h", &d), 0);
    ck_assert_double_eq_tol (d, now + 7200, 2);
    ck_assert_int_eq (gr_parse_deadline ("1800000000", &d), 0);
    ck_assert_double_eq (d, 1800000000);
    ck_assert_int_eq (gr_parse_deadline ("2030-01-02T03:04:05", &d), 0);
    struct tm tm = {.tm_year = 130, .tm_mon = 0, .tm_mday = 2, .tm_hour = 3,
                    .tm_min = 4, .tm_sec = 5, .tm_isdst = -1};
    ck_assert_double_eq (d, (double)mktime (&tm));
    ck_assert_int_eq (gr_parse_deadline ("2030-01-02 03:04", &d), 0);
    const char *bad[] = {"", "+", "+soon", "tomorrow", "2030-13-45T99:00", "12:00",
                         "2030-01-02T03:04:05Z", "2030-02-30T00:00:00"};
    for (size_t i = 0; i < sizeof (bad) / sizeof (bad[0]); i++)
        ck_assert_msg (gr_parse_deadline (bad[i], &d) == -1, "accepted '%s'", bad[i]);
}
END_TEST

START_TEST (test_hash_pinned)
{
    /* Keys are stored in journals and snapshots: these values must never
     * change. */
    ck_assert_uint_eq (gr_hash64 ("", 0), gr_hash64_final (GR_HASH64_INIT));
    uint64_t a = gr_hash64 ("sim", 3);
    uint64_t b = gr_hash64_final (gr_hash64_update (gr_hash64_update (GR_HASH64_INIT, "si", 2), "m", 1));
    ck_assert_uint_eq (a, b);
    /* Computed independently: FNV-1a 64 of "sim", then the splitmix64 finalizer. */
    ck_assert_uint_eq (a, 0xefc46cde4dc87bb3ULL);
    ck_assert_uint_ne (gr_hash64 ("sim", 3), gr_hash64 ("sin", 3));
}
END_TEST

START_TEST (test_crc32c)
{
    /* The standard check value of CRC-32C. */
    ck_assert_uint_eq (gr_crc32c (0, "123456789", 9), 0xe3069283u);
    uint32_t c = gr_crc32c (0, "1234", 4);
    ck_assert_uint_eq (gr_crc32c (c, "56789", 5), 0xe3069283u);
    char big[1000];
    for (int i = 0; i < 1000; i++)
        big[i] = (char)(i * 7);
    uint32_t whole = gr_crc32c (0, big, sizeof (big));
    uint32_t parts = gr_crc32c (gr_crc32c (0, big, 333), big + 333, 667);
    ck_assert_uint_eq (whole, parts);
    /* The instruction and the table agree on every length and alignment. */
    ck_assert_uint_eq (gr__crc32c_sw (0, "123456789", 9), 0xe3069283u);
    for (size_t off = 0; off < 8; off++) {
        for (size_t len = 0; len + off <= sizeof (big); len += 37)
            ck_assert_uint_eq (gr_crc32c (7, big + off, len),
                               gr__crc32c_sw (7, big + off, len));
    }
}
END_TEST

START_TEST (test_rng)
{
    gr_rng_t a, b;
    gr_rng_seed (&a, 42);
    gr_rng_seed (&b, 42);
    double sum = 0;
    for (int i = 0; i < 10000; i++) {
        double u = gr_rng_uniform (&a);
        ck_assert (u >= 0 && u < 1);
        ck_assert (u == gr_rng_uniform (&b));
        sum += u;
    }
    ck_assert_double_eq_tol (sum / 10000, 0.5, 0.02);
}
END_TEST

START_TEST (test_fs)
{
    char dir[] = "/tmp/gr-test-XXXXXX";
    char path[512], sub[512];
    gr_error_t e;
    char *buf;
    size_t len;
    struct stat st;

    ck_assert_ptr_nonnull (mkdtemp (dir));
    snprintf (sub, sizeof (sub), "%s/a/b/c", dir);
    ck_assert_int_eq (gr_mkdir_p (sub, 0700, &e), 0);
    ck_assert_int_eq (gr_mkdir_p (sub, 0700, &e), 0);
    ck_assert_int_eq (stat (sub, &st), 0);
    ck_assert ((st.st_mode & 0777) == 0700);

    snprintf (path, sizeof (path), "%s/a/file", dir);
    ck_assert_int_eq (gr_write_file_atomic (path, "hello", 5, 0600, &e), 0);
    ck_assert_int_eq (gr_read_file (path, 100, &buf, &len, &e), 0);
    ck_assert_uint_eq (len, 5);
    ck_assert_str_eq (buf, "hello");
    free (buf);
    ck_assert_int_eq (gr_write_file_atomic (path, "bye", 3, 0600, &e), 0);
    ck_assert_int_eq (gr_read_file (path, 100, &buf, &len, &e), 0);
    ck_assert_str_eq (buf, "bye");
    free (buf);
    errno = 0;
    ck_assert_int_eq (gr_read_file (path, 2, &buf, &len, &e), -1);
    ck_assert_int_eq (errno, EFBIG);
    ck_assert_ptr_nonnull (strstr (e.text, "limit"));

    /* A file where a directory is wanted. */
    snprintf (sub, sizeof (sub), "%s/a/file/x", dir);
    ck_assert_int_eq (gr_mkdir_p (sub, 0700, &e), -1);
    ck_assert_ptr_nonnull (strstr (e.text, "a/file"));
    ck_assert_int_eq (gr_read_file ("/nonexistent/x", 10, &buf, &len, &e), -1);
    ck_assert_ptr_nonnull (strstr (e.text, "/nonexistent/x"));

    char cmd[600];
    snprintf (cmd, sizeof (cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq (system (cmd), 0);
}
END_TEST

/* Label values escaped, samples formatted, and a file that appears whole. */
START_TEST (test_prom)
{
    char buf[64], dir[] = "/tmp/gr-prom-XXXXXX", path[128], tmp[160];
    ck_assert_str_eq (gr_prom_escape ("a\\b\"c\nd", buf, sizeof (buf)),
                      "a\\\\b\\\"c\\nd");
    /* Cut to fit, never in the middle of an escape. */
    ck_assert_str_eq (gr_prom_escape ("\"\"\"\"", buf, 6), "\\\"\\\"");
    ck_assert_ptr_nonnull (mkdtemp (dir));
    snprintf (path, sizeof (path), "%s/m.prom", dir);
    FILE *f = gr_prom_begin (path, tmp, sizeof (tmp));
    ck_assert_ptr_nonnull (f);
    gr_prom_head (f, "x_total", "counter", "Things.");
    gr_prom_put (f, "run=\"r\"", "x_total", "k=\"v\"", 3);
    gr_prom_put (f, "run=\"r\"", "x_total", NULL, 0.5);
    ck_assert_int_ne (access (path, F_OK), 0);
    ck_assert_int_eq (gr_prom_commit (f, tmp, path), 0);
    ck_assert_int_ne (access (tmp, F_OK), 0);
    char *text;
    size_t len;
    gr_error_t e;
    ck_assert_int_eq (gr_read_file (path, 4096, &text, &len, &e), 0);
    ck_assert_str_eq (text, "# HELP x_total Things.\n# TYPE x_total counter\n"
                            "x_total{run=\"r\",k=\"v\"} 3\nx_total{run=\"r\"} 0.5\n");
    free (text);
    /* A directory that is gone: NULL, and errno says why. */
    snprintf (path, sizeof (path), "%s/no/m.prom", dir);
    ck_assert_ptr_null (gr_prom_begin (path, tmp, sizeof (tmp)));
    ck_assert_int_eq (errno, ENOENT);
    snprintf (path, sizeof (path), "%s/m.prom", dir);
    unlink (path);
    rmdir (dir);
}
END_TEST

/* Quantiles against the exact ones of known data: uniform over 1..1000 ms,
 * a long tail, and a single value; within the buckets' 6.25%. */
START_TEST (test_hist)
{
    static gr_hist_t h;
    gr_hist_init (&h);
    ck_assert_double_eq (gr_hist_quantile (&h, 0.5), 0);
    for (int i = 1; i <= 1000; i++)
        gr_hist_add (&h, i / 1000.0);
    ck_assert_uint_eq (h.n, 1000);
    ck_assert_double_eq_tol (h.sum, 500.5, 1e-9);
    ck_assert_double_eq (h.min, 0.001);
    ck_assert_double_eq (h.max, 1.0);
    const double qs[] = {0.5, 0.95, 0.99};
    for (size_t k = 0; k < 3; k++) {
        double got = gr_hist_quantile (&h, qs[k]), want = qs[k];
        ck_assert_msg (got > want * 0.93 && got < want * 1.07, "q%.2f: %g, want %g", qs[k],
                       got, want);
    }
    ck_assert_double_eq (gr_hist_quantile (&h, 0), 0.001);
    ck_assert_double_eq (gr_hist_quantile (&h, 1), 1.0);
    ck_assert_uint_eq (gr_hist_count_le (&h, 10), 1000);
    uint64_t le = gr_hist_count_le (&h, 0.5);
    ck_assert_msg (le > 460 && le <= 500, "<= 0.5 s: %lu", (unsigned long)le);
    /* 99 fast, one very slow: P99 is fast, P100 the slow one. */
    gr_hist_init (&h);
    for (int i = 0; i < 99; i++)
        gr_hist_add (&h, 0.002);
    gr_hist_add (&h, 3600);
    double p99 = gr_hist_quantile (&h, 0.99);
    ck_assert_msg (p99 > 0.0018 && p99 < 0.0022, "p99 %g", p99);
    ck_assert_double_eq (gr_hist_quantile (&h, 1), 3600);
    /* Out of range and nonsense. */
    gr_hist_add (&h, -1);
    gr_hist_add (&h, 0.0 / 0.0);
    ck_assert_uint_eq (h.n, 100);
    gr_hist_add (&h, 1e-9);
    gr_hist_add (&h, 1e9);
    ck_assert_uint_eq (h.n, 102);
    ck_assert_double_eq (gr_hist_quantile (&h, 0), 1e-9);
    ck_assert_double_eq (gr_hist_quantile (&h, 1), 1e9);
    /* One value: every quantile is it. */
    gr_hist_init (&h);
    gr_hist_add (&h, 0.25);
    ck_assert_double_eq (gr_hist_quantile (&h, 0.5), 0.25);
    ck_assert_double_eq (gr_hist_quantile (&h, 0.99), 0.25);
}
END_TEST

/* What Slurm's environment says; each test runs in its own process (fork
 * mode), so setenv does not leak. */
START_TEST (test_slurm_env)
{
    char name[16], host[256];
    gr_error_t e;
    double t;

    unsetenv ("SLURMD_NODENAME");
    unsetenv ("SLURM_JOB_ID");
    unsetenv ("SLURM_RESTART_COUNT");
    unsetenv ("SLURM_JOB_NODELIST");
    unsetenv ("SLURM_NODELIST");
    unsetenv ("SLURM_JOB_END_TIME");
    ck_assert_int_eq (gethostname (host, sizeof (host)), 0);
    host[sizeof (host) - 1] = '\0';
    gr_node_name (name, sizeof (name));
    ck_assert_int_eq (strncmp (name, host, sizeof (name) - 1), 0);
    ck_assert_ptr_null (gr_slurm_job_id ());
    ck_assert_uint_eq (gr_slurm_restart_count (), 0);
    ck_assert_ptr_null (gr_slurm_nodelist ());
    ck_assert_int_eq (gr_slurm_end_time (&t, &e), 0);
    ck_assert (t == 0);

    /* The Slurm node name wins over the host name, truncated to fit. */
    setenv ("SLURMD_NODENAME", "n17", 1);
    gr_node_name (name, sizeof (name));
    ck_assert_str_eq (name, "n17");
    setenv ("SLURMD_NODENAME", "a-very-long-node-name-indeed", 1);
    gr_node_name (name, sizeof (name));
    ck_assert_str_eq (name, "a-very-long-nod");
    /* Empty is unset. */
    setenv ("SLURMD_NODENAME", "", 1);
    gr_node_name (name, sizeof (name));
    ck_assert_int_eq (strncmp (name, host, sizeof (name) - 1), 0);

    setenv ("SLURM_JOB_ID", "81234", 1);
    setenv ("SLURM_RESTART_COUNT", "3", 1);
    setenv ("SLURM_NODELIST", "n[1-2]", 1);
    ck_assert_str_eq (gr_slurm_job_id (), "81234");
    ck_assert_uint_eq (gr_slurm_restart_count (), 3);
    ck_assert_str_eq (gr_slurm_nodelist (), "n[1-2]");
    setenv ("SLURM_JOB_NODELIST", "g[01-04]", 1);
    ck_assert_str_eq (gr_slurm_nodelist (), "g[01-04]");
    setenv ("SLURM_RESTART_COUNT", "lots", 1);
    ck_assert_uint_eq (gr_slurm_restart_count (), 0);

    setenv ("SLURM_JOB_END_TIME", "1790000000", 1);
    ck_assert_int_eq (gr_slurm_end_time (&t, &e), 0);
    ck_assert (t == 1790000000.0);
    setenv ("SLURM_JOB_END_TIME", "tomorrow", 1);
    ck_assert_int_eq (gr_slurm_end_time (&t, &e), -1);
    ck_assert_ptr_nonnull (strstr (e.text, "SLURM_JOB_END_TIME='tomorrow'"));
    ck_assert_ptr_nonnull (strstr (e.text, "--deadline"));
}
END_TEST

/* squeue's end time (%e, SLURM_TIME_FORMAT=standard): local time, the
 * words for "none", and what is neither, named in the error. */
START_TEST (test_slurm_parse_end_time)
{
    static const char *const bad[] = {
        "", "   ", "tomorrow", "2026-11-22", "2026-11-22T03:04", "2026-11-22 03:04:05",
        "2026-02-30T00:00:00", "2026-13-01T00:00:00", "2026-11-22T25:00:00",
        "2026-11-22T03:04:05x", "2026-11-22T03:04:05 2026-11-22T03:04:06",
        "01:03:28", "1795316645", "UNLIMITED", "N/A/", "-2026-11-22T03:04:05",
    };
    gr_error_t e;
    double t = -1;

    setenv ("TZ", "UTC", 1);
    tzset ();
    ck_assert_int_eq (gr_slurm_parse_end_time ("2026-11-22T03:04:05", &t, &e), 0);
    ck_assert (t == 1795316645.0);
    ck_assert_int_eq (gr_slurm_parse_end_time (" \t2026-11-22T03:04:05\r\n", &t, &e), 0);
    ck_assert (t == 1795316645.0);
    /* Local time: an hour earlier in Berlin's winter, two in its summer. */
    setenv ("TZ", "Europe/Berlin", 1);
    tzset ();
    ck_assert_int_eq (gr_slurm_parse_end_time ("2026-11-22T03:04:05", &t, &e), 0);
    ck_assert (t == 1795316645.0 - 3600);
    ck_assert_int_eq (gr_slurm_parse_end_time ("2026-07-01T12:00:00", &t, &e), 0);
    ck_assert (t == 1782907200.0 - 7200);
    for (const char *const *w = (const char *const[]){"Unknown", "N/A", "NONE", "None",
                                                      " unknown\n", NULL};
         *w; w++) {
        t = -1;
        ck_assert_int_eq (gr_slurm_parse_end_time (*w, &t, &e), 0);
        ck_assert (t == 0);
    }
    for (size_t i = 0; i < sizeof (bad) / sizeof (bad[0]); i++) {
        char want[96];
        t = -1;
        errno = 0;
        ck_assert_msg (gr_slurm_parse_end_time (bad[i], &t, &e) == -1, "took '%s'", bad[i]);
        ck_assert_int_eq (errno, EINVAL);
        ck_assert (t == 0);
        snprintf (want, sizeof (want), "'%s' is not an end time", bad[i]);
        if (strchr (bad[i], '\r') == NULL && bad[i][0] != ' ')
            ck_assert_msg (strstr (e.text, want) != NULL, "message: %s", e.text);
    }
    /* A long value is cut in the message. */
    char lng[200];
    memset (lng, 'x', sizeof (lng) - 1);
    lng[sizeof (lng) - 1] = '\0';
    ck_assert_int_eq (gr_slurm_parse_end_time (lng, &t, &e), -1);
    ck_assert_uint_lt (strlen (e.text), 160);
}
END_TEST

START_TEST (test_grow)
{
    size_t cap = 0;
    int *a = gr_grow (NULL, &cap, 0, sizeof (*a), 4);
    ck_assert_ptr_nonnull (a);
    ck_assert_uint_eq (cap, 4);
    for (int i = 0; i < 4; i++)
        a[i] = i;
    /* Room left: the same array, the same capacity. */
    ck_assert_ptr_eq (gr_grow (a, &cap, 3, sizeof (*a), 4), a);
    ck_assert_uint_eq (cap, 4);
    /* Full: doubled, the contents kept. */
    a = gr_grow (a, &cap, 4, sizeof (*a), 4);
    ck_assert_ptr_nonnull (a);
    ck_assert_uint_eq (cap, 8);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq (a[i], i);
    /* gr_grow_to doubles until need fits, and leaves a fitting array alone. */
    ck_assert_ptr_eq (gr_grow_to (a, &cap, 8, sizeof (*a), 4), a);
    a = gr_grow_to (a, &cap, 33, sizeof (*a), 4);
    ck_assert_ptr_nonnull (a);
    ck_assert_uint_eq (cap, 64);
    ck_assert_int_eq (a[3], 3);
    free (a);
    cap = 0;
    char *b = gr_grow_to (NULL, &cap, 5000, 1, 4096);
    ck_assert_ptr_nonnull (b);
    ck_assert_uint_eq (cap, 8192);
    free (b);

    /* Sizes past SIZE_MAX fail with ENOMEM and leave p and *cap alone.
     * The capacities are made up: nothing is written through p. */
    char *p = malloc (16);
    ck_assert_ptr_nonnull (p);
    size_t big = SIZE_MAX / 2 + 1;
    cap = big;
    errno = 0;
    ck_assert_ptr_null (gr_grow (p, &cap, big, 1, 16));
    ck_assert_int_eq (errno, ENOMEM);
    ck_assert_uint_eq (cap, big);
    cap = SIZE_MAX;
    errno = 0;
    ck_assert_ptr_null (gr_grow (p, &cap, SIZE_MAX, 1, 16));
    ck_assert_int_eq (errno, ENOMEM);
    ck_assert_uint_eq (cap, SIZE_MAX);
    cap = SIZE_MAX / 16;
    errno = 0;
    ck_assert_ptr_null (gr_grow (p, &cap, cap, 16, 16));
    ck_assert_int_eq (errno, ENOMEM);
    ck_assert_uint_eq (cap, SIZE_MAX / 16);
    cap = 16;
    errno = 0;
    ck_assert_ptr_null (gr_grow_to (p, &cap, big + 1, 1, 16));
    ck_assert_int_eq (errno, ENOMEM);
    ck_assert_uint_eq (cap, 16);
    errno = 0;
    ck_assert_ptr_null (gr_grow_to (p, &cap, SIZE_MAX / 8 + 1, 8, 16));
    ck_assert_int_eq (errno, ENOMEM);
    ck_assert_uint_eq (cap, 16);
    /* p is still the caller's. */
    memset (p, 'x', 16);
    free (p);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("common");
    TCase *tc = tcase_create ("common");
    tcase_add_test (tc, test_errprintf);
    tcase_add_test (tc, test_durations);
    tcase_add_test (tc, test_sizes);
    tcase_add_test (tc, test_deadline);
    tcase_add_test (tc, test_hash_pinned);
    tcase_add_test (tc, test_crc32c);
    tcase_add_test (tc, test_rng);
    tcase_add_test (tc, test_fs);
    tcase_add_test (tc, test_hist);
    tcase_add_test (tc, test_prom);
    tcase_add_test (tc, test_slurm_env);
    tcase_add_test (tc, test_slurm_parse_end_time);
    tcase_add_test (tc, test_grow);
    suite_add_tcase (s, tc);
    return gr_check_main (s);
}
