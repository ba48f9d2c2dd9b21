#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "src/ckpt/snapshot.h"
#include "src/common/error.h"
#include "src/common/fs.h"

/* Each test works in its own temporary directory. */
static char dir[64];

static void setup (void)
{
    strcpy (dir, "/tmp/gr-snap-XXXXXX");
    ck_assert_ptr_nonnull (mkdtemp (dir));
}

static void teardown (void)
{
    char cmd[128];
    snprintf (cmd, sizeof (cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq (system (cmd), 0);
}

static double mono (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int exists (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0;
}

/* Strings a person's job can produce: quotes, spaces, newlines, tabs,
 * backslashes, and UTF-8 beyond ASCII. */
static const char *hostile[] = {
    "sim[3]",
    "x=1 y=foo",
    "it's \"quoted\"",
    "two\nlines\n",
    "tab\there  and  spaces ",
    "back\\slash $HOME `cmd` ;|&",
    "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x9a\x80",
    "",
};
#define NHOSTILE (sizeof (hostile) / sizeof (hostile[0]))

static const gr_snap_meta_t meta_a = {
    .job = "sweep \"A\"\nline two",
    .spec_hash = 0x0123456789abcdefULL,
    .spec_path = "/home/u/jobs/my job.yaml",
    .run_dir = "/scratch/u/run \xc3\xa9",
    .version = "0.1.0",
    .incarnation = 3,
    .started = 1700000000.25,
    .state = "running",
};

#define NROWS 18

static void make_rows (gr_snap_task_t *rows)
{
    for (int i = 0; i < NROWS; i++) {
        rows[i] = (gr_snap_task_t){
            .key = i == 0 ? UINT64_MAX : 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1),
            .name = hostile[i % NHOSTILE],
            .params = hostile[(i + 3) % NHOSTILE],
            .state = (gr_task_state_t)(i % 6),
            .attempts = (uint32_t)i * 7 + 1,
            .exit_code = i % 3 == 0 ? -1 : i - 9,
            .signal = i % 3 == 0 ? 9 : 0,
            .wall = i * 1.125 + 1e-9,
            .maxrss_kb = i == 5 ? INT64_MAX : (int64_t)i * 1000 - 3,
            .host = hostile[(i + 5) % NHOSTILE],
            .worker = i == 7 ? -1 : i % 4,
        };
    }
}

struct collect {
    gr_snap_task_t rows[64];
    char *strs[64][3];
    int n;
};

static int collect_row (const gr_snap_task_t *row, void *arg)
{
    struct collect *c = arg;
    ck_assert_int_lt (c->n, 64);
    c->rows[c->n] = *row;
    /* The strings only live through the callback: keep copies. */
    c->strs[c->n][0] = strdup (row->name);
    c->strs[c->n][1] = strdup (row->params);
    c->strs[c->n][2] = strdup (row->host);
    c->rows[c->n].name = c->strs[c->n][0];
    c->rows[c->n].params = c->strs[c->n][1];
    c->rows[c->n].host = c->strs[c->n][2];
    c->n++;
    return 0;
}

static void collect_free (struct collect *c)
{
    for (int i = 0; i < c->n; i++)
        for (int j = 0; j < 3; j++)
            free (c->strs[i][j]);
    c->n = 0;
}

static void assert_row_eq (const gr_snap_task_t *a, const gr_snap_task_t *b)
{
    ck_assert_uint_eq (a->key, b->key);
    ck_assert_str_eq (a->name, b->name);
    ck_assert_str_eq (a->params, b->params);
    ck_assert_int_eq (a->state, b->state);
    ck_assert_uint_eq (a->attempts, b->attempts);
    ck_assert_int_eq (a->exit_code, b->exit_code);
    ck_assert_int_eq (a->signal, b->signal);
    ck_assert (a->wall == b->wall);
    ck_assert_int_eq (a->maxrss_kb, b->maxrss_kb);
    ck_assert_str_eq (a->host, b->host);
    ck_assert_int_eq (a->worker, b->worker);
}

struct wcollect {
    gr_snap_worker_t w[8];
    char *hosts[8];
    int n;
};

static int collect_worker (const gr_snap_worker_t *w, void *arg)
{
    struct wcollect *c = arg;
    ck_assert_int_lt (c->n, 8);
    c->w[c->n] = *w;
    c->w[c->n].host = c->hosts[c->n] = strdup (w->host);
    c->n++;
    return 0;
}

struct mcollect {
    char names[16][64];
    double values[16];
    int n;
};

static int collect_metric (const char *name, double value, void *arg)
{
    struct mcollect *c = arg;
    ck_assert_int_lt (c->n, 16);
    snprintf (c->names[c->n], sizeof (c->names[0]), "%s", name);
    c->values[c->n++] = value;
    return 0;
}

/* Write a snapshot of one task called name at path. */
static void write_one (const char *path, const char *name)
{
    gr_error_t e = {{0}};
    gr_snap_task_t row = {.key = 1, .name = name, .params = "", .host = "h"};
    gr_snap_t *s = gr_snap_begin (path, &meta_a, &e);
    ck_assert_msg (s != NULL, "%s", e.text);
    ck_assert_int_eq (gr_snap_add_tasks (s, &row, 1, &e), 0);
    ck_assert_msg (gr_snap_commit (s, &e) == 0, "%s", e.text);
}

static int first_name (const gr_snap_task_t *row, void *arg)
{
    snprintf (arg, 64, "%s", row->name);
    return 0;
}

/* The name of the single task in the snapshot at path. */
static void assert_holds (const char *path, const char *name)
{
    gr_error_t e = {{0}};
    char got[64] = "";
    gr_snap_counts_t c;
    ck_assert_msg (gr_snap_read (path, first_name, got, &c, &e) == 0, "%s", e.text);
    ck_assert_str_eq (got, name);
}

/* A snapshot of an earlier gridrun, whose key_hex was a variable-length
 * string (tests/data/snapshot-vlen-key-hex.h5: tests/bin/gr-snapwrite of
 * then, repacked with 8-row chunks), still reads: the reader leaves
 * key_hex out. */
START_TEST (test_reads_vlen_key_hex)
{
    gr_error_t e = {{0}};
    struct collect c = {0};
    gr_snap_counts_t counts;

    ck_assert_msg (gr_snap_read (TEST_DATA_DIR "/snapshot-vlen-key-hex.h5", collect_row, &c,
                                 &counts, &e) == 0,
                   "%s", e.text);
    ck_assert_int_eq (c.n, 6);
    ck_assert_uint_eq (c.rows[0].key, 0x0123456789abcdefULL);
    ck_assert_str_eq (c.rows[0].name, "sim[0]");
    ck_assert_str_eq (c.rows[0].params, "x=1 y=foo");
    ck_assert_str_eq (c.rows[0].host, "node01");
    ck_assert_uint_eq (c.rows[1].key, UINT64_MAX);
    ck_assert_int_eq (c.rows[1].state, GR_TASK_FAILED);
    ck_assert_int_eq (c.rows[2].signal, 9);
    ck_assert_str_eq (c.rows[3].name, "later");
    collect_free (&c);
}
END_TEST

/* With the longest strings known, name, params and host are fixed-length
 * columns: every hostile string reads back as written, one as long as a
 * fixed column may be (GR_SNAP_FIXED_MAX) too; a row longer than said is
 * refused and adds nothing; a column whose longest is beyond
 * GR_SNAP_FIXED_MAX stays variable-length beside fixed ones. */
START_TEST (test_fixed_strings)
{
    char path[128], at_max[GR_SNAP_FIXED_MAX + 1], beyond[GR_SNAP_FIXED_MAX + 2];
    gr_error_t e = {{0}};
    gr_snap_task_t rows[NROWS + 1];
    struct collect c = {.n = 0};
    gr_snap_counts_t counts;
    gr_snap_meta_t meta = meta_a;
    size_t longest = 0;

    for (size_t i = 0; i < NHOSTILE; i++)
        longest = strlen (hostile[i]) > longest ? strlen (hostile[i]) : longest;
    memset (at_max, 'n', GR_SNAP_FIXED_MAX);
    at_max[GR_SNAP_FIXED_MAX] = '\0';
    memset (beyond, 'p', GR_SNAP_FIXED_MAX + 1);
    beyond[GR_SNAP_FIXED_MAX + 1] = '\0';
    snprintf (path, sizeof (path), "%s/run.h5", dir);

    for (int round = 0; round < 2; round++) {
        /* Round 0: all three fixed, the name at its widest.  Round 1: the
         * params column beyond the fixed limit, so variable-length. */
        make_rows (rows);
        rows[NROWS] = rows[0];
        rows[NROWS].key = 42;
        rows[NROWS].name = round == 0 ? at_max : "short";
        rows[NROWS].params = round == 1 ? beyond : "";
        meta.sizes_known = true;
        meta.name_max = round == 0 ? GR_SNAP_FIXED_MAX : longest;
        meta.params_max = round == 1 ? GR_SNAP_FIXED_MAX + 1 : longest;
        meta.host_max = longest;
        gr_snap_t *s = gr_snap_begin (path, &meta, &e);
        ck_assert_msg (s != NULL, "%s", e.text);
        ck_assert_msg (gr_snap_add_tasks (s, rows, NROWS + 1, &e) == 0, "%s", e.text);

        /* One byte too long for its column: refused, nothing of it added. */
        gr_snap_task_t bad[2] = {rows[1], rows[2]};
        bad[1].host = round == 0 ? "a host longer than every hostile string there is"
                                 : bad[1].host;
        bad[1].name = round == 1 ? at_max : bad[1].name;
        errno = 0;
        ck_assert_int_eq (gr_snap_add_tasks (s, bad, 2, &e), -1);
        ck_assert_int_eq (errno, EINVAL);
        ck_assert_ptr_nonnull (strstr (e.text, round == 0 ? "its host is" : "its name is"));
        ck_assert_msg (gr_snap_commit (s, &e) == 0, "%s", e.text);

        ck_assert_msg (gr_snap_read (path, collect_row, &c, &counts, &e) == 0, "%s",
                       e.text);
        ck_assert_int_eq (c.n, NROWS + 1);
        for (int i = 0; i < NROWS + 1; i++)
            assert_row_eq (&c.rows[i], &rows[i]);
        collect_free (&c);
    }
}
END_TEST

START_TEST (test_roundtrip)
{
    char path[128], tmp[160];
    gr_error_t e = {{0}};
    gr_snap_task_t rows[NROWS];
    gr_snap_counts_t counts = {
        .total = 100, .done = 90, .failed = 4, .poison = 1, .skipped = 2,
        .running = 3, .waiting = 5, .retries = 6, .timeouts = 7, .crashes = 8,
        .attempts = 1ULL << 40, .duplicates = UINT64_MAX,
    };
    gr_snap_counts_t got_counts;
    const gr_snap_worker_t workers[] = {
        {.rank = 0, .host = "node-a", .cpus = 64, .gpus = 0, .lost = 0},
        {.rank = 1, .host = "caf\xc3\xa9 \"b\"\n", .cpus = 32, .gpus = 4, .lost = 1},
        {.rank = 2, .host = NULL, .cpus = 1, .gpus = 8, .lost = 0},
    };
    struct collect c = {.n = 0};

    snprintf (path, sizeof (path), "%s/run.h5", dir);
    snprintf (tmp, sizeof (tmp), "%s.tmp", path);
    make_rows (rows);
    gr_snap_t *s = gr_snap_begin (path, &meta_a, &e);
    ck_assert_msg (s != NULL, "%s", e.text);
    ck_assert (exists (tmp));
    /* Rows in uneven calls, including an empty one. */
    ck_assert_msg (gr_snap_add_tasks (s, rows, 5, &e) == 0, "%s", e.text);
    ck_assert_int_eq (gr_snap_add_tasks (s, rows + 5, 0, &e), 0);
    ck_assert_int_eq (gr_snap_add_tasks (s, rows + 5, NROWS - 5, &e), 0);
    /* Setting workers twice keeps the second set. */
    ck_assert_int_eq (gr_snap_set_workers (s, workers, 1, &e), 0);
    ck_assert_msg (gr_snap_set_workers (s, workers, 3, &e) == 0, "%s", e.text);
    ck_assert_int_eq (gr_snap_set_counts (s, &counts, &e), 0);
    ck_assert_int_eq (gr_snap_add_metric (s, "wall_seconds", 12.5, &e), 0);
    ck_assert_int_eq (gr_snap_add_metric (s, "throughput", 1e6 / 3, &e), 0);
    ck_assert_int_eq (gr_snap_add_metric (s, "busy_seconds", -0.0, &e), 0);
    /* A metric given again is updated in place. */
    ck_assert_int_eq (gr_snap_add_metric (s, "wall_seconds", 13.75, &e), 0);
    double before = (double)time (NULL);
    ck_assert_msg (gr_snap_commit (s, &e) == 0, "%s", e.text);
    ck_assert (!exists (tmp));
    ck_assert (exists (path));

    ck_assert_msg (gr_snap_read (path, collect_row, &c, &got_counts, &e) == 0, "%s",
                   e.text);
    ck_assert_int_eq (c.n, NROWS);
    for (int i = 0; i < NROWS; i++)
        assert_row_eq (&c.rows[i], &rows[i]);
    ck_assert (memcmp (&got_counts, &counts, sizeof (counts)) == 0);
    collect_free (&c);

    gr_snap_meta_t m;
    double written;
    ck_assert_msg (gr_snap_read_meta (path, &m, &written, &e) == 0, "%s", e.text);
    ck_assert_str_eq (m.job, meta_a.job);
    ck_assert_uint_eq (m.spec_hash, meta_a.spec_hash);
    ck_assert_str_eq (m.spec_path, meta_a.spec_path);
    ck_assert_str_eq (m.run_dir, meta_a.run_dir);
    ck_assert_str_eq (m.version, meta_a.version);
    ck_assert_uint_eq (m.incarnation, meta_a.incarnation);
    ck_assert (m.started == meta_a.started);
    ck_assert_str_eq (m.state, "running");
    ck_assert (written >= before - 1 && written <= (double)time (NULL) + 1);
    gr_snap_meta_clear (&m);
    ck_assert_ptr_null (m.job);

    struct wcollect wc = {.n = 0};
    ck_assert_msg (gr_snap_read_workers (path, collect_worker, &wc, &e) == 0, "%s",
                   e.text);
    ck_assert_int_eq (wc.n, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq (wc.w[i].rank, workers[i].rank);
        ck_assert_str_eq (wc.w[i].host, workers[i].host ? workers[i].host : "");
        ck_assert_uint_eq (wc.w[i].cpus, workers[i].cpus);
        ck_assert_uint_eq (wc.w[i].gpus, workers[i].gpus);
        ck_assert_uint_eq (wc.w[i].lost, workers[i].lost);
        free (wc.hosts[i]);
    }

    struct mcollect mc = {.n = 0};
    ck_assert_msg (gr_snap_read_metrics (path, collect_metric, &mc, &e) == 0, "%s",
                   e.text);
    ck_assert_int_eq (mc.n, 3);
    ck_assert_str_eq (mc.names[0], "wall_seconds");
    ck_assert (mc.values[0] == 13.75);
    ck_assert_str_eq (mc.names[1], "throughput");
    ck_assert (mc.values[1] == 1e6 / 3);
    ck_assert_str_eq (mc.names[2], "busy_seconds");
    ck_assert (mc.values[2] == 0);

    /* counts and fn may be NULL. */
    ck_assert_int_eq (gr_snap_read (path, NULL, NULL, NULL, &e), 0);
}
END_TEST

/* An empty snapshot still has the whole layout. */
START_TEST (test_empty)
{
    char path[128];
    gr_error_t e = {{0}};
    gr_snap_counts_t got;
    struct collect c = {.n = 0};
    struct wcollect wc = {.n = 0};
    struct mcollect mc = {.n = 0};
    gr_snap_meta_t empty = {.job = NULL}, m;

    snprintf (path, sizeof (path), "%s/empty.h5", dir);
    gr_snap_t *s = gr_snap_begin (path, &empty, &e);
    ck_assert_msg (s != NULL, "%s", e.text);
    ck_assert_msg (gr_snap_commit (s, &e) == 0, "%s", e.text);
    memset (&got, 0xff, sizeof (got));
    ck_assert_msg (gr_snap_read (path, collect_row, &c, &got, &e) == 0, "%s", e.text);
    ck_assert_int_eq (c.n, 0);
    ck_assert_uint_eq (got.total, 0);
    ck_assert_uint_eq (got.duplicates, 0);
    ck_assert_int_eq (gr_snap_read_workers (path, collect_worker, &wc, &e), 0);
    ck_assert_int_eq (wc.n, 0);
    ck_assert_int_eq (gr_snap_read_metrics (path, collect_metric, &mc, &e), 0);
    ck_assert_int_eq (mc.n, 0);
    ck_assert_int_eq (gr_snap_read_meta (path, &m, NULL, &e), 0);
    ck_assert_str_eq (m.job, "");
    ck_assert_str_eq (m.state, "");
    ck_assert_uint_eq (m.spec_hash, 0);
    gr_snap_meta_clear (&m);
}
END_TEST

#define BIG_ROWS 1000000
#define BIG_BATCH 4096

static void big_row (uint32_t i, gr_snap_task_t *t, char *name, char *params, char *host)
{
    sprintf (name, "sim[%" PRIu32 "]", i);
    sprintf (params, "x=%" PRIu32 " y=foo", i % 1000);
    sprintf (host, "node%03" PRIu32, i % 128);
    *t = (gr_snap_task_t){
        .key = 0x9e3779b97f4a7c15ULL * (i + 1ULL),
        .name = name,
        .params = params,
        .state = (gr_task_state_t)(i % 6),
        .attempts = 1 + i % 3,
        .exit_code = (int32_t)(i % 7) - 1,
        .signal = i % 7 == 0 ? 9 : 0,
        .wall = i * 0.001,
        .maxrss_kb = (int64_t)i * 3,
        .host = host,
        .worker = (int32_t)(i % 64),
    };
}

struct big_check {
    uint32_t n;
    uint32_t bad;
};

static int check_big_row (const gr_snap_task_t *row, void *arg)
{
    struct big_check *bc = arg;
    char name[32], params[32], host[32];
    gr_snap_task_t want;

    big_row (bc->n, &want, name, params, host);
    /* Check everything, count mismatches, and assert on the first one
     * with a readable message. */
    if (row->key != want.key || strcmp (row->name, name) != 0
        || strcmp (row->params, params) != 0 || row->state != want.state
        || row->attempts != want.attempts || row->exit_code != want.exit_code
        || row->signal != want.signal || row->wall != want.wall
        || row->maxrss_kb != want.maxrss_kb || strcmp (row->host, host) != 0
        || row->worker != want.worker) {
        if (bc->bad++ == 0)
            assert_row_eq (row, &want);
    }
    bc->n++;
    return 0;
}

/* Under AddressSanitizer (configure --enable-sanitizers) freed memory
 * waits in a quarantine, 256 MiB by default, before it is reused, and
 * test_million's bound on the growth of the RSS would count it.  A small
 * quarantine keeps the bound meaningful: a writer that kept the rows
 * would still go far past it. */
#if defined(__SANITIZE_ADDRESS__)
#define GR_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GR_TEST_ASAN 1
#endif
#endif
#ifdef GR_TEST_ASAN
const char *__asan_default_options (void);
const char *__asan_default_options (void)
{
    return "quarantine_size_mb=16";
}
#endif

static long maxrss_kb (void)
{
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

START_TEST (test_million)
{
    char path[128];
    gr_error_t e = {{0}};
    gr_snap_task_t *rows = calloc (BIG_BATCH, sizeof (*rows));
    char (*strs)[3][32] = calloc (BIG_BATCH, sizeof (*strs));
    uint32_t total = BIG_ROWS;
    const char *env = getenv ("GR_SNAP_BIG_ROWS");
    struct stat st;

    /* Valgrind runs can ask for fewer rows. */
    if (env)
        total = (uint32_t)strtoul (env, NULL, 10);
    ck_assert_ptr_nonnull (rows);
    ck_assert_ptr_nonnull (strs);
    snprintf (path, sizeof (path), "%s/big.h5", dir);
    long rss0 = maxrss_kb ();
    double t0 = mono ();
    gr_snap_t *s = gr_snap_begin (path, &meta_a, &e);
    ck_assert_msg (s != NULL, "%s", e.text);
    for (uint32_t i = 0; i < total; i += BIG_BATCH) {
        uint32_t n = total - i < BIG_BATCH ? total - i : BIG_BATCH;
        for (uint32_t j = 0; j < n; j++)
            big_row (i + j, &rows[j], strs[j][0], strs[j][1], strs[j][2]);
        ck_assert_msg (gr_snap_add_tasks (s, rows, n, &e) == 0, "%s", e.text);
    }
    gr_snap_counts_t counts = {.total = total};
    ck_assert_int_eq (gr_snap_set_counts (s, &counts, &e), 0);
    ck_assert_msg (gr_snap_commit (s, &e) == 0, "%s", e.text);
    double t1 = mono ();
    long rss1 = maxrss_kb ();

    struct big_check bc = {0, 0};
    gr_snap_counts_t got;
    ck_assert_msg (gr_snap_read (path, check_big_row, &bc, &got, &e) == 0, "%s", e.text);
    double t2 = mono ();
    ck_assert_uint_eq (bc.n, total);
    ck_assert_uint_eq (bc.bad, 0);
    ck_assert_uint_eq (got.total, total);
    ck_assert_int_eq (stat (path, &st), 0);

    printf ("# %" PRIu32 " rows: write %.2f s (%.0f rows/s), read %.2f s "
            "(%.0f rows/s), file %.1f MB, max RSS grew %.1f MB while writing\n",
            total, t1 - t0, total / (t1 - t0), t2 - t1, total / (t2 - t1),
            st.st_size / 1e6, (rss1 - rss0) / 1024.0);
    fflush (stdout);
    /* The rows alone would be well over 100 MB in memory: the writer must
     * not keep them. */
    ck_assert_int_lt (rss1 - rss0, 64 * 1024);
    free (rows);
    free (strs);
}
END_TEST

START_TEST (test_atomic_replace)
{
    char path[128], tmp[160];
    gr_error_t e = {{0}};

    snprintf (path, sizeof (path), "%s/run.h5", dir);
    snprintf (tmp, sizeof (tmp), "%s.tmp", path);
    write_one (path, "A");
    assert_holds (path, "A");

    gr_snap_t *s = gr_snap_begin (path, &meta_a, &e);
    ck_assert_msg (s != NULL, "%s", e.text);
    gr_snap_task_t row = {.key = 2, .name = "B"};
    ck_assert_int_eq (gr_snap_add_tasks (s, &row, 1, &e), 0);
    gr_snap_abort (s);
    ck_assert (!exists (tmp));
    assert_holds (path, "A");
    gr_snap_abort (NULL);

    /* A temporary file left by a crash is truncated, not appended to. */
    ck_assert_int_eq (gr_write_file_atomic (tmp, "junk", 4, 0600, &e), 0);
    write_one (path, "B");
    ck_assert (!exists (tmp));
    assert_holds (path, "B");
}
END_TEST

/* What a failure must leave: an error that names the snapshot, the old
 * snapshot whole, and no temporary file. */
static void assert_failed_cleanly (const gr_error_t *e, const char *path,
                                   const char *old)
{
    char tmp[160];
    snprintf (tmp, sizeof (tmp), "%s.tmp", path);
    ck_assert_msg (strstr (e->text, path) != NULL, "error does not name %s: %s", path,
                   e->text);
    ck_assert (!exists (tmp));
    assert_holds (path, old);
}

START_TEST (test_failed_commit)
{
    char path[128], tmp[160], bad[160];
    gr_error_t e = {{0}};
    gr_snap_task_t row = {.key = 2, .name = "B"};

    snprintf (path, sizeof (path), "%s/run.h5", dir);
    snprintf (tmp, sizeof (tmp), "%s.tmp", path);
    write_one (path, "A");

    /* The temporary file disappears under the writer (a cleanup script):
     * the commit cannot sync it and must not rename anything. */
    gr_snap_t *s = gr_snap_begin (path, &meta_a, &e);
    ck_assert_msg (s != NULL, "%s", e.text);
    ck_assert_int_eq (gr_snap_add_tasks (s, &row, 1, &e), 0);
    ck_assert_int_eq (unlink (tmp), 0);
    errno = 0;
    ck_assert_int_eq (gr_snap_commit (s, &e), -1);
    ck_assert_int_eq (errno, ENOENT);
    ck_assert_msg (strstr (e.text, "No such file") != NULL, "%s", e.text);
    assert_failed_cleanly (&e, path, "A");

    /* The temporary file cannot be created. */
    ck_assert_int_eq (mkdir (tmp, 0700), 0);
    e.text[0] = '\0';
    ck_assert_ptr_null (gr_snap_begin (path, &meta_a, &e));
    ck_assert_msg (strstr (e.text, tmp) != NULL, "%s", e.text);
    ck_assert_int_eq (rmdir (tmp), 0);
    assert_holds (path, "A");

    /* A directory that does not exist. */
    snprintf (bad, sizeof (bad), "%s/no/such/dir/run.h5", dir);
    errno = 0;
    ck_assert_ptr_null (gr_snap_begin (bad, &meta_a, &e));
    ck_assert_int_eq (errno, ENOENT);
    ck_assert_msg (strstr (e.text, bad) != NULL, "%s", e.text);
    ck_assert_msg (strstr (e.text, "No such file or directory") != NULL, "%s", e.text);

    /* A state the file's enum does not have is refused before HDF5 sees
     * it; the snapshot can still be aborted cleanly. */
    s = gr_snap_begin (path, &meta_a, &e);
    ck_assert_ptr_nonnull (s);
    gr_snap_task_t odd[] = {
        {.key = 3, .name = "fine", .state = GR_TASK_DONE},
        {.key = 4, .name = "odd", .state = (gr_task_state_t)9},
    };
    errno = 0;
    ck_assert_int_eq (gr_snap_add_tasks (s, odd, 2, &e), -1);
    ck_assert_int_eq (errno, EINVAL);
    ck_assert_msg (strstr (e.text, "task 'odd'") && strstr (e.text, "unknown state 9"),
                   "%s", e.text);
    ck_assert_int_eq (gr_snap_add_metric (s, "a/b", 1, &e), -1);
    ck_assert_int_eq (errno, EINVAL);
    gr_snap_abort (s);
    ck_assert (!exists (tmp));
    assert_holds (path, "A");

    /* A refused call adds nothing, and the snapshot stays usable. */
    s = gr_snap_begin (path, &meta_a, &e);
    ck_assert_ptr_nonnull (s);
    ck_assert_int_eq (gr_snap_add_tasks (s, odd, 2, &e), -1);
    ck_assert_int_eq (gr_snap_add_tasks (s, odd, 1, &e), 0);
    ck_assert_msg (gr_snap_commit (s, &e) == 0, "%s", e.text);
    struct collect c = {.n = 0};
    ck_assert_int_eq (gr_snap_read (path, collect_row, &c, NULL, &e), 0);
    ck_assert_int_eq (c.n, 1);
    ck_assert_str_eq (c.rows[0].name, "fine");
    collect_free (&c);
}
END_TEST

/* The disk fills up while writing (a file size limit stands in for a full
 * disk), at different points: HDF5's failed writes come back as text
 * naming the file, and the process survives them (HDF5 1.10 crashes at
 * exit after a failed close, which the module must never let happen). */
static const struct {
    rlim_t limit;
    int rows;
} full_cases[] = {
    {256 * 1024, 25600},    /* while adding rows */
    {16 * 1024, 256},       /* at commit, when HDF5 flushes its caches */
    {1024, 1},              /* at once */
};

START_TEST (test_disk_full)
{
    char path[128];
    gr_error_t e = {{0}};
    struct rlimit old, lim;
    gr_snap_task_t rows[256];
    char names[256][32];
    int rc = 0, left = full_cases[_i].rows;
    const char *stage = "add";

    snprintf (path, sizeof (path), "%s/run.h5", dir);
    write_one (path, "A");
    ck_assert_int_eq (getrlimit (RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = full_cases[_i].limit;
    signal (SIGXFSZ, SIG_IGN);
    ck_assert_int_eq (setrlimit (RLIMIT_FSIZE, &lim), 0);

    for (int i = 0; i < 256; i++) {
        snprintf (names[i], sizeof (names[i]), "task-%d", i);
        rows[i] = (gr_snap_task_t){.key = (uint64_t)i, .name = names[i],
                                   .params = names[i], .host = names[i]};
    }
    gr_snap_t *s = gr_snap_begin (path, &meta_a, &e);
    if (!s)
        stage = "begin";
    while (s && left > 0 && rc == 0) {
        int n = left > 256 ? 256 : left;
        rc = gr_snap_add_tasks (s, rows, (size_t)n, &e);
        left -= n;
    }
    /* Nothing is printed before the limit is lifted: it applies to a
     * log file on stdout too. */
    char add_error[GR_ERROR_TEXT_MAX] = "";
    if (s && rc < 0) {
        strcpy (add_error, e.text);
        ck_assert_msg (strstr (e.text, path) != NULL, "%s", e.text);
        ck_assert_int_eq (errno, EFBIG);
        /* After a failed write, commit refuses and cleans up. */
        ck_assert_int_eq (gr_snap_commit (s, &e), -1);
        ck_assert_msg (strstr (e.text, "an earlier write"), "%s", e.text);
    } else if (s) {
        stage = "commit";
        ck_assert_int_eq (gr_snap_commit (s, &e), -1);
        ck_assert_int_eq (errno, EFBIG);
    }
    ck_assert_int_eq (setrlimit (RLIMIT_FSIZE, &old), 0);
    signal (SIGXFSZ, SIG_DFL);
    printf ("# disk full at %s: %s\n", stage, add_error[0] ? add_error : e.text);
    fflush (stdout);
    ck_assert_msg (strstr (add_error[0] ? add_error : e.text, "File too large"), "%s",
                   e.text);
    assert_failed_cleanly (&e, path, "A");
    /* The next snapshot works. */
    write_one (path, "C");
    assert_holds (path, "C");
}
END_TEST

/* Flip the first occurrence of from (same length as to) in the file at
 * path, so the test can damage a snapshot without the HDF5 API.  The
 * superblock and object headers of these files carry no checksums. */
static void patch_file (const char *path, const char *from, const char *to)
{
    char *buf;
    size_t len, n = strlen (from);
    gr_error_t e;

    ck_assert_int_eq (gr_read_file (path, 1 << 24, &buf, &len, &e), 0);
    char *p = memmem (buf, len, from, n);
    ck_assert_msg (p != NULL, "'%s' not in %s", from, path);
    memcpy (p, to, n);
    ck_assert_int_eq (gr_write_file_atomic (path, buf, len, 0600, &e), 0);
    free (buf);
}

static int refuse_row (const gr_snap_task_t *row, void *arg)
{
    return -1;
}

START_TEST (test_read_errors)
{
    char path[128], other[128], stderr_path[128];
    gr_error_t e = {{0}};
    gr_snap_counts_t c;

    /* Nothing of HDF5's own error printing reaches stderr. */
    snprintf (stderr_path, sizeof (stderr_path), "%s/stderr", dir);
    fflush (stderr);
    int saved_fd = dup (2);
    int fd = open (stderr_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge (fd, 0);
    dup2 (fd, 2);
    close (fd);

    snprintf (path, sizeof (path), "%s/missing.h5", dir);
    errno = 0;
    ck_assert_int_eq (gr_snap_read (path, NULL, NULL, &c, &e), -1);
    ck_assert_int_eq (errno, ENOENT);
    ck_assert_msg (strstr (e.text, path) && strstr (e.text, "No such file"), "%s",
                   e.text);

    snprintf (path, sizeof (path), "%s/notes.txt", dir);
    ck_assert_int_eq (gr_write_file_atomic (path, "hello\n", 6, 0600, &e), 0);
    ck_assert_int_eq (gr_snap_read (path, NULL, NULL, &c, &e), -1);
    ck_assert_int_eq (errno, EINVAL);
    snprintf (other, sizeof (other), "'%s' is not a gridrun snapshot: it is not an "
              "HDF5 file", path);
    ck_assert_str_eq (e.text, other);

    ck_assert_int_eq (gr_snap_read (dir, NULL, NULL, &c, &e), -1);
    ck_assert_msg (strstr (e.text, "is a directory"), "%s", e.text);

    /* An HDF5 file whose format attribute has another name. */
    snprintf (path, sizeof (path), "%s/noformat.h5", dir);
    write_one (path, "A");
    patch_file (path, "format", "formet");
    ck_assert_int_eq (gr_snap_read (path, NULL, NULL, &c, &e), -1);
    snprintf (other, sizeof (other), "'%s' is not a gridrun snapshot: it has no "
              "format attribute", path);
    ck_assert_str_eq (e.text, other);
    gr_snap_meta_t m;
    ck_assert_int_eq (gr_snap_read_meta (path, &m, NULL, &e), -1);
    ck_assert_str_eq (e.text, other);

    /* An HDF5 file of another format version. */
    snprintf (path, sizeof (path), "%s/other.h5", dir);
    write_one (path, "A");
    patch_file (path, "gridrun-run-1", "gridrun-run-9");
    ck_assert_int_eq (gr_snap_read (path, NULL, NULL, &c, &e), -1);
    snprintf (other, sizeof (other), "'%s' is not a gridrun snapshot: its format is "
              "'gridrun-run-9', not 'gridrun-run-1'", path);
    ck_assert_str_eq (e.text, other);

    /* A snapshot cut short (copied while a disk filled). */
    snprintf (path, sizeof (path), "%s/cut.h5", dir);
    write_one (path, "A");
    struct stat st;
    ck_assert_int_eq (stat (path, &st), 0);
    ck_assert_int_eq (truncate (path, st.st_size / 2), 0);
    e.text[0] = '\0';
    ck_assert_int_eq (gr_snap_read (path, NULL, NULL, &c, &e), -1);
    ck_assert_msg (strstr (e.text, path) != NULL, "%s", e.text);

    /* A callback that refuses a row stops the read. */
    snprintf (path, sizeof (path), "%s/ok.h5", dir);
    write_one (path, "A");
    ck_assert_int_eq (gr_snap_read (path, refuse_row, NULL, &c, &e), -1);
    ck_assert_msg (strstr (e.text, "stopped"), "%s", e.text);

    fflush (stderr);
    dup2 (saved_fd, 2);
    close (saved_fd);
    ck_assert_int_eq (stat (stderr_path, &st), 0);
    ck_assert_int_eq (st.st_size, 0);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("snapshot");
    TCase *tc = tcase_create ("snapshot");
    tcase_add_checked_fixture (tc, setup, teardown);
    tcase_add_test (tc, test_roundtrip);
    tcase_add_test (tc, test_reads_vlen_key_hex);
    tcase_add_test (tc, test_fixed_strings);
    tcase_add_test (tc, test_empty);
    tcase_add_test (tc, test_atomic_replace);
    tcase_add_test (tc, test_failed_commit);
    tcase_add_loop_test (tc, test_disk_full, 0,
                         (int)(sizeof (full_cases) / sizeof (full_cases[0])));
    tcase_add_test (tc, test_read_errors);
    suite_add_tcase (s, tc);

    TCase *big = tcase_create ("million");
    tcase_add_checked_fixture (big, setup, teardown);
    tcase_set_timeout (big, 600);
    tcase_add_test (big, test_million);
    suite_add_tcase (s, big);
    return gr_check_main (s);
}
