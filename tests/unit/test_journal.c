#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_main.h"
#include "src/common/error.h"
#include "src/common/gtime.h"
#include "src/common/hash.h"
#include "src/journal/journal.h"

#define DATA TEST_DATA_DIR

static char tmpdir[64];
static char jpath[128];

static void setup (void)
{
    strcpy (tmpdir, "/tmp/gr-journal-XXXXXX");
    ck_assert_ptr_nonnull (mkdtemp (tmpdir));
    snprintf (jpath, sizeof (jpath), "%s/journal", tmpdir);
}

static void teardown (void)
{
    char cmd[128];
    snprintf (cmd, sizeof (cmd), "rm -rf '%s'", tmpdir);
    if (system (cmd) != 0)
        fprintf (stderr, "cleanup failed\n");
}

/* Files. */

static void put_file (const char *path, const void *data, size_t len)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge (fd, 0);
    ck_assert_int_eq (write (fd, data, len), (ssize_t)len);
    ck_assert_int_eq (close (fd), 0);
}

static unsigned char *get_file (const char *path, size_t *lenp)
{
    struct stat st;
    int fd = open (path, O_RDONLY);
    ck_assert_int_ge (fd, 0);
    ck_assert_int_eq (fstat (fd, &st), 0);
    unsigned char *buf = malloc ((size_t)st.st_size + 1);
    ck_assert_ptr_nonnull (buf);
    ck_assert_int_eq (read (fd, buf, (size_t)st.st_size), st.st_size);
    close (fd);
    *lenp = (size_t)st.st_size;
    return buf;
}

static void assert_same_file (const char *a_path, const char *b_path)
{
    size_t alen, blen;
    unsigned char *a = get_file (a_path, &alen);
    unsigned char *b = get_file (b_path, &blen);
    ck_assert_uint_eq (alen, blen);
    ck_assert (memcmp (a, b, alen) == 0);
    free (a);
    free (b);
}

static uint64_t file_size (const char *path)
{
    struct stat st;
    ck_assert_int_eq (stat (path, &st), 0);
    return (uint64_t)st.st_size;
}

/* Records: deep copies, so a replay can be compared after it returns. */

typedef struct {
    gr_jrec_t *v;
    size_t n;
    size_t cap;
    size_t stop_at;         /* return -1 at this record (1-based); 0: never */
} recs_t;

static void recs_push (recs_t *rs, const gr_jrec_t *rec)
{
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 16;
        rs->v = realloc (rs->v, rs->cap * sizeof (*rs->v));
        ck_assert_ptr_nonnull (rs->v);
    }
    gr_jrec_t *c = &rs->v[rs->n++];
    *c = *rec;
    if (rec->type == GR_JREC_TASK_START && rec->start.n > 0) {
        gr_jstart_t *t = malloc (rec->start.n * sizeof (*t));
        ck_assert_ptr_nonnull (t);
        memcpy (t, rec->start.tasks, rec->start.n * sizeof (*t));
        c->start.tasks = t;
    }
    else if (rec->type == GR_JREC_TASK_END && rec->end.n > 0) {
        gr_jend_t *t = malloc (rec->end.n * sizeof (*t));
        ck_assert_ptr_nonnull (t);
        memcpy (t, rec->end.tasks, rec->end.n * sizeof (*t));
        c->end.tasks = t;
    }
}

static void recs_free (recs_t *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        if (rs->v[i].type == GR_JREC_TASK_START && rs->v[i].start.n > 0)
            free ((void *)rs->v[i].start.tasks);
        else if (rs->v[i].type == GR_JREC_TASK_END && rs->v[i].end.n > 0)
            free ((void *)rs->v[i].end.tasks);
    }
    free (rs->v);
    memset (rs, 0, sizeof (*rs));
}

static int collect (const gr_jrec_t *rec, void *arg)
{
    recs_t *rs = arg;
    recs_push (rs, rec);
    if (rs->stop_at && rs->n == rs->stop_at) {
        errno = EINTR;
        return -1;
    }
    return 0;
}

/* Doubles compare by bits, so NaN and -0.0 round trip exactly. */
static bool same_f64 (double a, double b)
{
    return memcmp (&a, &b, sizeof (a)) == 0;
}

/* Whether version 2 stores a duration in microseconds: from 0 up to 9e9
 * seconds (doc/journal-format.md). */
static bool in_us (double v)
{
    return !signbit (v) && v < 9e9;
}

/* What replay gives back for a duration written in a format version, when
 * version 2 stores it in microseconds: the nearest, halves up.  Other
 * values come back bit for bit. */
static double kept (double v, unsigned version)
{
    if (version < 2 || !in_us (v))
        return v;
    return round (v * 1e6) / 1e6;
}

/* Version 3 leaves keys out: replay gives 0. */
static uint64_t kept_key (uint64_t key, unsigned version)
{
    return version >= 3 ? 0 : key;
}

static bool start_eq (const gr_jstart_t *a, const gr_jstart_t *b, unsigned version)
{
    return a->key == kept_key (b->key, version) && a->index == b->index
           && a->def == b->def && a->attempt == b->attempt;
}

/* a was replayed from a journal of the given version; b was appended.
 * Version 2 stores an entry's three durations in microseconds only when
 * all three can be; otherwise all three bit for bit. */
static bool end_eq (const gr_jend_t *a, const gr_jend_t *b, unsigned version)
{
    if (a->key != kept_key (b->key, version))
        return false;
    if (!in_us (b->wall) || !in_us (b->utime) || !in_us (b->stime))
        version = 1;
    return a->index == b->index && a->def == b->def
           && a->attempt == b->attempt && a->exit_code == b->exit_code
           && a->signal == b->signal && a->flags == b->flags
           && a->outcome == b->outcome && same_f64 (a->wall, kept (b->wall, version))
           && same_f64 (a->utime, kept (b->utime, version))
           && same_f64 (a->stime, kept (b->stime, version))
           && a->maxrss_kb == b->maxrss_kb;
}

static void assert_rec_eq (const gr_jrec_t *a, const gr_jrec_t *b, size_t i,
                           unsigned version)
{
    ck_assert_msg (a->type == b->type, "record %zu: type %d, want %d", i,
                   (int)a->type, (int)b->type);
    ck_assert_msg (same_f64 (a->time, b->time), "record %zu: time", i);
    switch (b->type) {
        case GR_JREC_RUN_START:
            ck_assert_uint_eq (a->run_start.spec_hash, b->run_start.spec_hash);
            ck_assert_uint_eq (a->run_start.incarnation, b->run_start.incarnation);
            ck_assert_uint_eq (a->run_start.nworkers, b->run_start.nworkers);
            break;
        case GR_JREC_WORKER:
            ck_assert_uint_eq (a->worker.rank, b->worker.rank);
            ck_assert_uint_eq (a->worker.cpus, b->worker.cpus);
            ck_assert_uint_eq (a->worker.gpus, b->worker.gpus);
            ck_assert_str_eq (a->worker.host, b->worker.host);
            break;
        case GR_JREC_TASK_START:
            ck_assert_uint_eq (a->start.worker, b->start.worker);
            ck_assert_uint_eq (a->start.n, b->start.n);
            ck_assert (a->start.keyless == (version >= 3));
            for (uint32_t k = 0; k < b->start.n; k++)
                ck_assert_msg (start_eq (&a->start.tasks[k], &b->start.tasks[k], version),
                               "record %zu: start entry %u differs", i, k);
            break;
        case GR_JREC_TASK_END:
            ck_assert_uint_eq (a->end.worker, b->end.worker);
            ck_assert_uint_eq (a->end.n, b->end.n);
            ck_assert (a->end.keyless == (version >= 3));
            for (uint32_t k = 0; k < b->end.n; k++)
                ck_assert_msg (end_eq (&a->end.tasks[k], &b->end.tasks[k], version),
                               "record %zu: end entry %u differs", i, k);
            break;
        case GR_JREC_DRAIN:
            ck_assert_int_eq (a->drain.reason, b->drain.reason);
            ck_assert (same_f64 (a->drain.deadline, b->drain.deadline));
            break;
        case GR_JREC_RUN_END:
            ck_assert_int_eq (a->run_end.exit_code, b->run_end.exit_code);
            break;
        case GR_JREC_WORKER_LOST:
            ck_assert_uint_eq (a->lost.rank, b->lost.rank);
            break;
        case GR_JREC_QUARANTINE:
            ck_assert_uint_eq (a->quarantine.level, b->quarantine.level);
            ck_assert_uint_eq (a->quarantine.on, b->quarantine.on);
            ck_assert_uint_eq (a->quarantine.failures, b->quarantine.failures);
            ck_assert (same_f64 (a->quarantine.until, b->quarantine.until));
            ck_assert_str_eq (a->quarantine.name, b->quarantine.name);
            break;
    }
}

static void assert_recs_eq_v (const recs_t *got, const gr_jrec_t *want, size_t n,
                              unsigned version)
{
    ck_assert_uint_eq (got->n, n);
    for (size_t i = 0; i < n; i++)
        assert_rec_eq (&got->v[i], &want[i], i, version);
}

/* As written in the current version. */
static void assert_recs_eq (const recs_t *got, const gr_jrec_t *want, size_t n)
{
    assert_recs_eq_v (got, want, n, GR_JOURNAL_VERSION);
}

static gr_journal_opts_t quiet_opts (void)
{
    gr_journal_opts_t o;
    gr_journal_opts_init (&o);
    o.commit_interval = 1e9;
    o.commit_records = UINT32_MAX;
    return o;
}

/* Open a new journal in the given format version.  gridrun creates
 * version 3 and appends in a file's own version, so versions 1 and 2 are
 * had by writing their header first. */
static gr_journal_t *open_version (const char *path, unsigned version,
                                   const gr_journal_opts_t *o, gr_error_t *e)
{
    if (version == 1)
        put_file (path, "GRJNL\0\0\1", GR_JOURNAL_HDR_LEN);
    else if (version == 2)
        put_file (path, "GRJNL\0\0\2", GR_JOURNAL_HDR_LEN);
    return gr_journal_open (path, 0, o, e);
}

/* Write recs to path in a format version, one sync per record, and return
 * in offs[i] the file offset where record i starts (offs[n] is the end). */
static void write_journal_v (const char *path, unsigned version,
                             const gr_jrec_t *recs, size_t n, uint64_t *offs)
{
    gr_error_t e;
    gr_journal_opts_t o = quiet_opts ();
    gr_journal_t *j = open_version (path, version, &o, &e);
    ck_assert_msg (j != NULL, "%s", e.text);
    for (size_t i = 0; i < n; i++) {
        if (offs)
            offs[i] = file_size (path);
        ck_assert_msg (gr_journal_append (j, &recs[i], &e) == 0, "%s", e.text);
        ck_assert_msg (gr_journal_sync (j, &e) == 0, "%s", e.text);
    }
    if (offs)
        offs[n] = file_size (path);
    ck_assert_msg (gr_journal_close (j, &e) == 0, "%s", e.text);
}

static void write_journal (const char *path, const gr_jrec_t *recs, size_t n,
                           uint64_t *offs)
{
    write_journal_v (path, GR_JOURNAL_VERSION, recs, n, offs);
}

static void replay_ok (const char *path, recs_t *rs, gr_journal_info_t *info)
{
    gr_error_t e;
    ck_assert_msg (gr_journal_replay (path, collect, rs, info, &e) == 0, "%s",
                   e.text);
}

/* A small journal of every kind of record, used by the damage tests. */

/* A gr_jend_t in the order of the journal's format (gr_jend_t's own
 * order is the master's, see journal.h). */
#define JSTART(key_, index_, def_, attempt_)                                           \
    {                                                                                    \
        .key = (key_), .index = (index_), .def = (def_), .attempt = (attempt_)           \
    }
#define JEND(key_, index_, def_, attempt_, exit_code_, signal_, flags_, outcome_, wall_,  \
             utime_, stime_, maxrss_kb_)                                                 \
    {                                                                                    \
        .key = (key_), .index = (index_), .def = (def_), .attempt = (attempt_),          \
        .exit_code = (exit_code_), .signal = (signal_), .flags = (flags_),               \
        .outcome = (outcome_), .wall = (wall_), .utime = (utime_), .stime = (stime_),    \
        .maxrss_kb = (maxrss_kb_)                                                        \
    }

static gr_jstart_t small_starts[3] = {
    JSTART (0x1111, 0, 0, 1), JSTART (0x2222, 1, 0, 1), JSTART (0x3333, 2, 1, 2),
};
static gr_jend_t small_ends[3] = {
    JEND (0x1111, 0, 0, 1, 0, 0, 0, GR_JOUT_DONE, 1.5, 1.0, 0.25, 2048),
    JEND (0x2222, 1, 0, 1, 1, 0, 0, GR_JOUT_RETRY, 2.5, 2.0, 0.5, 4096),
    JEND (0x3333, 2, 1, 2, -1, 9, 2, GR_JOUT_POISON, 0.5, 0.0, 0.0, -1),
};

static size_t small_journal (gr_jrec_t *r)
{
    size_t n = 0;
    r[n] = (gr_jrec_t){ .type = GR_JREC_RUN_START, .time = 100.0 };
    r[n].run_start.spec_hash = 0xdeadbeefcafef00dULL;
    r[n].run_start.incarnation = 1;
    r[n++].run_start.nworkers = 2;
    r[n] = (gr_jrec_t){ .type = GR_JREC_WORKER, .time = 100.5 };
    r[n].worker.rank = 1;
    r[n].worker.cpus = 16;
    strcpy (r[n++].worker.host, "node17");
    r[n] = (gr_jrec_t){ .type = GR_JREC_TASK_START, .time = 101.0 };
    r[n].start.worker = 1;
    r[n].start.n = 3;
    r[n++].start.tasks = small_starts;
    r[n] = (gr_jrec_t){ .type = GR_JREC_TASK_END, .time = 102.0 };
    r[n].end.worker = 1;
    r[n].end.n = 3;
    r[n++].end.tasks = small_ends;
    r[n] = (gr_jrec_t){ .type = GR_JREC_WORKER_LOST, .time = 103.0 };
    r[n++].lost.rank = 2;
    r[n] = (gr_jrec_t){ .type = GR_JREC_DRAIN, .time = 104.0 };
    r[n].drain.reason = 15;
    r[n++].drain.deadline = 164.0;
    r[n] = (gr_jrec_t){ .type = GR_JREC_RUN_END, .time = 105.0 };
    r[n++].run_end.exit_code = 75;
    return n;
}

START_TEST (test_opts_defaults)
{
    gr_journal_opts_t o;
    memset (&o, 0xff, sizeof (o));
    gr_journal_opts_init (&o);
    ck_assert_double_eq (o.commit_interval, 0.05);
    ck_assert_uint_eq (o.commit_records, 4096);
    ck_assert (!o.nosync);
}
END_TEST

/* Looped over the format versions: _i is 1, 2 or 3. */
START_TEST (test_roundtrip)
{
    enum { BIG = 10000 };
    unsigned version = (unsigned)_i;
    gr_jstart_t one_start = JSTART (UINT64_MAX, UINT64_MAX - 1, UINT32_MAX, 7);
    gr_jend_t one_end = { .key = 1, .index = 2, .def = 3, .attempt = 4,
                          .exit_code = INT32_MIN, .signal = INT32_MAX,
                          .flags = 0xffffffffu, .outcome = GR_JOUT_REQUEUED,
                          .wall = -0.0, .utime = 1e300, .stime = NAN,
                          .maxrss_kb = INT64_MIN };
    gr_jstart_t *bs = calloc (BIG, sizeof (*bs));
    gr_jend_t *be = calloc (BIG, sizeof (*be));
    ck_assert (bs && be);
    for (uint32_t i = 0; i < BIG; i++) {
        bs[i] = (gr_jstart_t)JSTART (gr_hash64 (&i, sizeof (i)), i, i % 7, 1 + i % 3);
        be[i] = (gr_jend_t){ .key = bs[i].key, .index = i, .def = i % 7,
                             .attempt = 1 + i % 3, .exit_code = (int32_t)i - 5000,
                             .signal = (int32_t)(i % 32), .flags = i, .outcome = i % 5,
                             .wall = i * 0.001, .utime = i * 1e-4, .stime = i * 1e-5,
                             .maxrss_kb = (int64_t)i * 1024 };
    }
    char host63[64];
    memset (host63, 'h', 63);
    host63[63] = '\0';

    gr_jrec_t r[16];
    size_t n = 0;
    r[n] = (gr_jrec_t){ .type = GR_JREC_RUN_START, .time = 1700000000.123456 };
    r[n].run_start.spec_hash = UINT64_MAX;
    r[n].run_start.incarnation = 3;
    r[n++].run_start.nworkers = UINT32_MAX;
    r[n] = (gr_jrec_t){ .type = GR_JREC_WORKER, .time = -1.0 };
    r[n].worker.rank = 0;
    r[n].worker.cpus = 0;
    r[n].worker.gpus = 0;
    r[n++].worker.host[0] = '\0';
    r[n] = (gr_jrec_t){ .type = GR_JREC_WORKER, .time = 2.0 };
    r[n].worker.rank = UINT32_MAX;
    r[n].worker.cpus = 128;
    r[n].worker.gpus = 8;
    strcpy (r[n++].worker.host, host63);
    r[n] = (gr_jrec_t){ .type = GR_JREC_TASK_START, .time = 3.0 };
    r[n].start.worker = 5;
    r[n].start.n = 0;
    r[n++].start.tasks = NULL;
    r[n] = (gr_jrec_t){ .type = GR_JREC_TASK_START, .time = 4.0 };
    r[n].start.worker = 6;
    r[n].start.n = 1;
    r[n++].start.tasks = &one_start;
    r[n] = (gr_jrec_t){ .type = GR_JREC_TASK_START, .time = 5.0 };
    r[n].start.worker = 7;
    r[n].start.n = BIG;
    r[n++].start.tasks = bs;
    r[n] = (gr_jrec_t){ .type = GR_JREC_TASK_END, .time = 6.0 };
    r[n].end.worker = 8;
    r[n].end.n = 0;
    r[n++].end.tasks = NULL;
    r[n] = (gr_jrec_t){ .type = GR_JREC_TASK_END, .time = 7.0 };
    r[n].end.worker = 9;
    r[n].end.n = 1;
    r[n++].end.tasks = &one_end;
    r[n] = (gr_jrec_t){ .type = GR_JREC_TASK_END, .time = 8.0 };
    r[n].end.worker = 10;
    r[n].end.n = BIG;
    r[n++].end.tasks = be;
    r[n] = (gr_jrec_t){ .type = GR_JREC_DRAIN, .time = 9.0 };
    r[n].drain.reason = 0;
    r[n++].drain.deadline = 1700000600.5;
    r[n] = (gr_jrec_t){ .type = GR_JREC_DRAIN, .time = 9.5 };
    r[n].drain.reason = -15;
    r[n++].drain.deadline = INFINITY;
    r[n] = (gr_jrec_t){ .type = GR_JREC_WORKER_LOST, .time = 10.0 };
    r[n++].lost.rank = 42;
    r[n] = (gr_jrec_t){ .type = GR_JREC_RUN_END, .time = 11.0 };
    r[n++].run_end.exit_code = -2;
    /* Version 2 only: appended to a version 1 journal, it is left out. */
    r[n] = (gr_jrec_t){ .type = GR_JREC_QUARANTINE, .time = 12.0 };
    r[n].quarantine.level = UINT32_MAX;
    r[n].quarantine.on = 1;
    r[n].quarantine.failures = UINT32_MAX;
    r[n].quarantine.until = NAN;
    strcpy (r[n++].quarantine.name, host63);
    size_t nappend = n;
    if (version == 1)
        n--;

    /* All in one commit. */
    gr_error_t e;
    gr_journal_opts_t o = quiet_opts ();
    gr_journal_t *j = open_version (jpath, version, &o, &e);
    ck_assert_msg (j != NULL, "%s", e.text);
    for (size_t i = 0; i < nappend; i++)
        ck_assert_msg (gr_journal_append (j, &r[i], &e) == 0, "%s", e.text);
    gr_journal_stats_t st;
    gr_journal_get_stats (j, &st);
    ck_assert_uint_eq (st.records, n);
    ck_assert_uint_eq (st.syncs, 0);
    ck_assert_uint_eq (file_size (jpath), GR_JOURNAL_HDR_LEN);
    ck_assert_int_eq (gr_journal_close (j, &e), 0);
    ck_assert_uint_eq (file_size (jpath), GR_JOURNAL_HDR_LEN + st.bytes);

    recs_t got = { 0 };
    gr_journal_info_t info;
    replay_ok (jpath, &got, &info);
    assert_recs_eq_v (&got, r, n, version);
    ck_assert_uint_eq (info.version, version);
    ck_assert_uint_eq (info.records, n);
    ck_assert_int_eq (info.damage, GR_JDAMAGE_NONE);
    ck_assert_str_eq (info.damage_text, "");
    ck_assert_uint_eq (info.valid_len, GR_JOURNAL_HDR_LEN + st.bytes);
    ck_assert_uint_eq (info.file_len, info.valid_len);
    /* Exact sizes: the format is packed, not a struct dump. */
    uint64_t fixed = 8 * n + 25 + (22 + 0) + (22 + 63) + 17 + 17 + 21 + 21 + 13 + 13
                     + (version == 1 ? 0 : 30 + 63);
    if (version == 1)
        ck_assert_uint_eq (st.bytes, fixed + (17 + 24) + (17 + 24 * BIG) + (17 + 72)
                                         + (17 + 72 * BIG));
    else {
        /* one_start: flags, key, index delta -2 (zigzag 3), def, attempt 7. */
        uint64_t one_start_len = 1 + 8 + 1 + 5 + 1;
        ck_assert_uint_le (st.bytes, fixed + 17 + one_start_len + (17 + 29 * BIG)
                                         + (17 + 83) + (17 + 83 * BIG));
        ck_assert_uint_lt (st.bytes, fixed + 2 * 17 + 96 * BIG);
    }
    recs_free (&got);
    free (bs);
    free (be);
}
END_TEST

/* A batch too large for one record is split, and replays the same. */
START_TEST (test_split_batch)
{
    enum { N = 150000 };
    unsigned version = (unsigned)_i;
    gr_jend_t *be = calloc (N, sizeof (*be));
    ck_assert_ptr_nonnull (be);
    for (uint32_t i = 0; i < N; i++)
        be[i] = (gr_jend_t){ .key = i, .index = i, .attempt = 1,
                             .outcome = GR_JOUT_DONE, .wall = i };
    gr_jrec_t r = { .type = GR_JREC_TASK_END, .time = 1.0 };
    r.end.worker = 3;
    r.end.n = N;
    r.end.tasks = be;
    gr_error_t e;
    gr_journal_opts_t o = quiet_opts ();
    gr_journal_t *j = open_version (jpath, version, &o, &e);
    ck_assert_ptr_nonnull (j);
    ck_assert_int_eq (gr_journal_append (j, &r, &e), 0);
    gr_journal_stats_t st;
    gr_journal_get_stats (j, &st);
    ck_assert_uint_eq (st.records, 3);
    ck_assert_int_eq (gr_journal_close (j, &e), 0);

    recs_t got = { 0 };
    gr_journal_info_t info;
    replay_ok (jpath, &got, &info);
    ck_assert_uint_eq (got.n, 3);
    ck_assert_int_eq (info.damage, GR_JDAMAGE_NONE);
    uint32_t k = 0;
    for (size_t i = 0; i < got.n; i++) {
        ck_assert_int_eq (got.v[i].type, GR_JREC_TASK_END);
        ck_assert_uint_eq (got.v[i].end.worker, 3);
        /* Split at the largest entry size: 72 bytes (v1), 83 (v2). */
        uint64_t emax = version == 1 ? 72 : 83;
        ck_assert_uint_le (17 + emax * got.v[i].end.n, GR_JOURNAL_MAX_RECORD);
        if (i + 1 < got.n)
            ck_assert_uint_eq (got.v[i].end.n, (GR_JOURNAL_MAX_RECORD - 17) / emax);
        for (uint32_t t = 0; t < got.v[i].end.n; t++, k++)
            ck_assert (end_eq (&got.v[i].end.tasks[t], &be[k], version));
    }
    ck_assert_uint_eq (k, N);
    recs_free (&got);
    free (be);
}
END_TEST

static size_t replay_count (const char *path)
{
    gr_journal_info_t info;
    gr_error_t e;
    ck_assert_msg (gr_journal_replay (path, NULL, NULL, &info, &e) == 0, "%s",
                   e.text);
    ck_assert_int_eq (info.damage, GR_JDAMAGE_NONE);
    return info.records;
}

START_TEST (test_group_commit)
{
    gr_jstart_t t[100];
    for (int i = 0; i < 100; i++)
        t[i] = (gr_jstart_t)JSTART ((uint64_t)i, (uint64_t)i, 0, 1);
    gr_error_t e;
    gr_journal_opts_t o;
    gr_journal_opts_init (&o);
    o.commit_interval = 10;
    o.commit_records = 100;
    gr_journal_t *j = gr_journal_open (jpath, 0, &o, &e);
    ck_assert_ptr_nonnull (j);
    gr_journal_stats_t st;

    /* Nothing pending: nothing due, nothing to do. */
    ck_assert_double_eq (gr_journal_due (j), 0);
    ck_assert_int_eq (gr_journal_maybe_sync (j, gr_now () + 1e6, &e), 0);

    /* 99 entries in batches of 33: below the count, inside the interval. */
    double before = gr_now ();
    for (int b = 0; b < 3; b++) {
        gr_jrec_t r = { .type = GR_JREC_TASK_START, .time = b };
        r.start.worker = 1;
        r.start.n = 33;
        r.start.tasks = t + 33 * b;
        ck_assert_int_eq (gr_journal_append (j, &r, &e), 0);
        ck_assert_int_eq (gr_journal_maybe_sync (j, gr_now (), &e), 0);
    }
    double due = gr_journal_due (j);
    ck_assert (due >= before + 10 && due <= gr_now () + 10);
    gr_journal_get_stats (j, &st);
    ck_assert_uint_eq (st.syncs, 0);
    ck_assert_uint_eq (st.records, 3);
    /* Appended but not synced: not in the file. */
    ck_assert_uint_eq (replay_count (jpath), 0);

    /* The 100th entry reaches commit_records. */
    gr_jrec_t r = { .type = GR_JREC_TASK_START, .time = 3 };
    r.start.worker = 1;
    r.start.n = 1;
    r.start.tasks = t + 99;
    ck_assert_int_eq (gr_journal_append (j, &r, &e), 0);
    ck_assert_int_eq (gr_journal_maybe_sync (j, gr_now (), &e), 1);
    ck_assert_double_eq (gr_journal_due (j), 0);
    gr_journal_get_stats (j, &st);
    ck_assert_uint_eq (st.syncs, 1);
    ck_assert (st.sync_seconds >= 0);
    ck_assert_uint_eq (replay_count (jpath), 4);
    ck_assert_int_eq (gr_journal_maybe_sync (j, gr_now (), &e), 0);

    /* A non-task record counts as one entry: it waits for the interval. */
    gr_jrec_t lost = { .type = GR_JREC_WORKER_LOST, .time = 4 };
    lost.lost.rank = 2;
    ck_assert_int_eq (gr_journal_append (j, &lost, &e), 0);
    double now = gr_now ();
    ck_assert_int_eq (gr_journal_maybe_sync (j, now, &e), 0);
    ck_assert_int_eq (gr_journal_maybe_sync (j, now + 9.9, &e), 0);
    ck_assert_uint_eq (replay_count (jpath), 4);
    ck_assert_int_eq (gr_journal_maybe_sync (j, gr_journal_due (j), &e), 1);
    ck_assert_uint_eq (replay_count (jpath), 5);

    /* An empty batch is still a record that must become durable. */
    gr_jrec_t empty = { .type = GR_JREC_TASK_END, .time = 5 };
    ck_assert_int_eq (gr_journal_append (j, &empty, &e), 0);
    ck_assert_int_eq (gr_journal_maybe_sync (j, gr_now () + 11, &e), 1);

    /* An explicit sync commits whatever is pending, and only then. */
    ck_assert_int_eq (gr_journal_sync (j, &e), 0);
    ck_assert_int_eq (gr_journal_append (j, &lost, &e), 0);
    ck_assert_int_eq (gr_journal_sync (j, &e), 0);
    gr_journal_get_stats (j, &st);
    ck_assert_uint_eq (st.syncs, 4);
    ck_assert_uint_eq (st.records, 7);
    ck_assert_uint_eq (replay_count (jpath), 7);

    /* Close commits what is left. */
    ck_assert_int_eq (gr_journal_append (j, &lost, &e), 0);
    ck_assert_int_eq (gr_journal_close (j, &e), 0);
    ck_assert_uint_eq (replay_count (jpath), 8);
    ck_assert_int_eq (gr_journal_close (NULL, &e), 0);
}
END_TEST

START_TEST (test_bad_append)
{
    gr_error_t e;
    gr_journal_opts_t o = quiet_opts ();
    gr_journal_t *j = gr_journal_open (jpath, 0, &o, &e);
    ck_assert_ptr_nonnull (j);
    gr_jrec_t r = { .type = 99, .time = 1 };
    errno = 0;
    ck_assert_int_eq (gr_journal_append (j, &r, &e), -1);
    ck_assert_int_eq (errno, EINVAL);
    r = (gr_jrec_t){ .type = GR_JREC_TASK_END, .time = 1 };
    r.end.n = 2;
    ck_assert_int_eq (gr_journal_append (j, &r, &e), -1);
    ck_assert_int_eq (errno, EINVAL);
    r = (gr_jrec_t){ .type = GR_JREC_WORKER, .time = 1 };
    memset (r.worker.host, 'x', sizeof (r.worker.host));
    ck_assert_int_eq (gr_journal_append (j, &r, &e), -1);
    ck_assert_int_eq (errno, EINVAL);
    ck_assert_ptr_nonnull (strstr (e.text, "host"));
    r = (gr_jrec_t){ .type = GR_JREC_QUARANTINE, .time = 1 };
    memset (r.quarantine.name, 'x', sizeof (r.quarantine.name));
    ck_assert_int_eq (gr_journal_append (j, &r, &e), -1);
    ck_assert_int_eq (errno, EINVAL);
    ck_assert_ptr_nonnull (strstr (e.text, "name"));
    /* Nothing of the failed appends was kept. */
    gr_journal_stats_t st;
    gr_journal_get_stats (j, &st);
    ck_assert_uint_eq (st.records, 0);
    ck_assert_double_eq (gr_journal_due (j), 0);
    ck_assert_int_eq (gr_journal_close (j, &e), 0);
    ck_assert_uint_eq (file_size (jpath), GR_JOURNAL_HDR_LEN);
}
END_TEST

static void assert_damage (const char *path, size_t want_records,
                           uint64_t want_off, const gr_jdamage_t *kinds,
                           size_t nkinds, const char *what)
{
    gr_journal_info_t info;
    gr_error_t e;
    ck_assert_msg (gr_journal_replay (path, NULL, NULL, &info, &e) == 0,
                   "%s: %s", what, e.text);
    ck_assert_msg (info.records == want_records, "%s: %" PRIu64
                   " records, want %zu", what, info.records, want_records);
    bool kind_ok = false;
    for (size_t k = 0; k < nkinds; k++)
        kind_ok |= info.damage == kinds[k];
    ck_assert_msg (kind_ok, "%s: damage kind %d", what, (int)info.damage);
    ck_assert_msg (info.damage_offset == want_off, "%s: damage at %" PRIu64
                   ", want %" PRIu64, what, info.damage_offset, want_off);
    ck_assert_uint_eq (info.valid_len, want_off);
    char at[64];
    snprintf (at, sizeof (at), "at byte %" PRIu64 " (", want_off);
    ck_assert_msg (strstr (info.damage_text, at) && strstr (info.damage_text, path),
                   "%s: text '%s'", what, info.damage_text);
    snprintf (at, sizeof (at), "the %zu records before it", want_records);
    ck_assert_msg (strstr (info.damage_text, at), "%s: text '%s'", what,
                   info.damage_text);
}

START_TEST (test_truncate)
{
    unsigned version = (unsigned)_i; /* looped over the format versions */
    gr_jrec_t r[8];
    uint64_t off[9];
    size_t n = small_journal (r);
    write_journal_v (jpath, version, r, n, off);
    size_t len;
    unsigned char *whole = get_file (jpath, &len);
    ck_assert_uint_eq (len, off[n]);
    char cut[128];
    snprintf (cut, sizeof (cut), "%s/cut", tmpdir);
    gr_jdamage_t torn = GR_JDAMAGE_TORN;

    /* At every byte inside the last record, and inside the batch records
     * in the middle. */
    size_t victims[] = { n - 1, 2, 3 };
    for (size_t v = 0; v < sizeof (victims) / sizeof (victims[0]); v++) {
        size_t i = victims[v];
        for (uint64_t at = off[i] + 1; at < off[i + 1]; at++) {
            char what[64];
            snprintf (what, sizeof (what), "record %zu cut at %" PRIu64, i, at);
            put_file (cut, whole, at);
            assert_damage (cut, i, off[i], &torn, 1, what);
        }
    }
    /* At every record boundary: no damage. */
    for (size_t i = 0; i <= n; i++) {
        gr_journal_info_t info;
        put_file (cut, whole, off[i]);
        recs_t got = { 0 };
        replay_ok (cut, &got, &info);
        assert_recs_eq_v (&got, r, i, version);
        ck_assert_int_eq (info.damage, GR_JDAMAGE_NONE);
        ck_assert_uint_eq (info.valid_len, off[i]);
        recs_free (&got);
    }
    /* The torn text names the cause. */
    gr_journal_info_t info;
    put_file (cut, whole, off[n] - 1);
    ck_assert_int_eq (gr_journal_replay (cut, NULL, NULL, &info, NULL), 0);
    ck_assert_ptr_nonnull (strstr (info.damage_text, "torn write"));
    free (whole);
}
END_TEST

START_TEST (test_bitflip)
{
    unsigned version = (unsigned)_i; /* looped over the format versions */
    gr_jrec_t r[8];
    uint64_t off[9];
    size_t n = small_journal (r);
    write_journal_v (jpath, version, r, n, off);
    int fd = open (jpath, O_RDWR);
    ck_assert_int_ge (fd, 0);
    gr_jdamage_t kinds[] = { GR_JDAMAGE_CRC, GR_JDAMAGE_LENGTH,
                             GR_JDAMAGE_FORMAT };
    int seen[5] = { 0 };

    /* Every record but the first and last, so damage is always followed by
     * good records that must not be delivered. */
    for (size_t i = 1; i + 1 < n; i++) {
        for (uint64_t at = off[i]; at < off[i + 1]; at++) {
            unsigned char b, f;
            ck_assert_int_eq (pread (fd, &b, 1, (off_t)at), 1);
            for (int bit = 0; bit < 8; bit++) {
                char what[64];
                snprintf (what, sizeof (what), "record %zu byte %" PRIu64
                          " bit %d", i, at, bit);
                f = b ^ (unsigned char)(1u << bit);
                ck_assert_int_eq (pwrite (fd, &f, 1, (off_t)at), 1);
                assert_damage (jpath, i, off[i], kinds, 3, what);
                gr_journal_info_t info;
                gr_journal_replay (jpath, NULL, NULL, &info, NULL);
                seen[info.damage]++;
            }
            ck_assert_int_eq (pwrite (fd, &b, 1, (off_t)at), 1);
        }
    }
    close (fd);
    printf ("# bit flips: %d CRC, %d LENGTH, %d FORMAT\n", seen[GR_JDAMAGE_CRC],
            seen[GR_JDAMAGE_LENGTH], seen[GR_JDAMAGE_FORMAT]);
    fflush (stdout);
    /* Flips in a length field that point past the end of the file are
     * recognised as bad lengths, not passed off as a torn tail. */
    ck_assert_int_gt (seen[GR_JDAMAGE_LENGTH], 0);
    ck_assert_uint_eq (replay_count (jpath), n);
}
END_TEST

static void random_bytes (gr_rng_t *rng, unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)gr_rng_next (rng);
}

START_TEST (test_garbage_tail)
{
    unsigned version = (unsigned)_i; /* looped over the format versions */
    gr_jrec_t r[8];
    uint64_t off[9];
    size_t n = small_journal (r);
    write_journal_v (jpath, version, r, n, off);
    size_t len;
    unsigned char *whole = get_file (jpath, &len);
    gr_jdamage_t any[] = { GR_JDAMAGE_TORN, GR_JDAMAGE_CRC, GR_JDAMAGE_LENGTH,
                           GR_JDAMAGE_FORMAT };
    size_t sizes[] = { 1, 3, 7, 8, 9, 16, 100, 4096, 100000 };
    gr_rng_t rng;
    gr_rng_seed (&rng, 7);
    for (size_t s = 0; s < sizeof (sizes) / sizeof (sizes[0]); s++) {
        for (int rep = 0; rep < 20; rep++) {
            unsigned char *buf = malloc (len + sizes[s]);
            ck_assert_ptr_nonnull (buf);
            memcpy (buf, whole, len);
            random_bytes (&rng, buf + len, sizes[s]);
            /* Plausible lengths too, so CRC damage is reached. */
            if (rep % 2 && sizes[s] >= 8) {
                uint32_t l = (uint32_t)(gr_rng_next (&rng) % (sizes[s] + 16));
                memcpy (buf + len, &l, 4);
            }
            put_file (jpath, buf, len + sizes[s]);
            char what[64];
            snprintf (what, sizeof (what), "%zu bytes of garbage", sizes[s]);
            recs_t got = { 0 };
            gr_journal_info_t info;
            replay_ok (jpath, &got, &info);
            assert_recs_eq_v (&got, r, n, version);
            recs_free (&got);
            assert_damage (jpath, n, off[n], any, 4, what);
            free (buf);
        }
    }
    free (whole);
}
END_TEST

START_TEST (test_random_file)
{
    unsigned version = (unsigned)_i; /* looped over the format versions */
    gr_rng_t rng;
    gr_rng_seed (&rng, 12345);
    gr_jdamage_t any[] = { GR_JDAMAGE_TORN, GR_JDAMAGE_CRC, GR_JDAMAGE_LENGTH,
                           GR_JDAMAGE_FORMAT };
    for (int rep = 0; rep < 300; rep++) {
        size_t len = (size_t)(gr_rng_next (&rng) % 20000) + 1;
        unsigned char *buf = malloc (GR_JOURNAL_HDR_LEN + len);
        ck_assert_ptr_nonnull (buf);
        memcpy (buf, GR_JOURNAL_MAGIC, GR_JOURNAL_HDR_LEN);
        buf[GR_JOURNAL_HDR_LEN - 1] = (unsigned char)version;
        random_bytes (&rng, buf + GR_JOURNAL_HDR_LEN, len);
        put_file (jpath, buf, GR_JOURNAL_HDR_LEN + len);
        assert_damage (jpath, 0, GR_JOURNAL_HDR_LEN, any, 4, "random file");
        free (buf);
    }
}
END_TEST

/* Raw records with a correct CRC, for contents the writer never makes. */

static unsigned char *le32 (unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + 4;
}

/* Frame payload[len] with the given length field and a matching CRC. */
static size_t frame (unsigned char *out, uint32_t lenfield,
                     const unsigned char *payload, size_t len)
{
    le32 (out, lenfield);
    le32 (out + 4, gr_crc32c (0, payload, len));
    memcpy (out + 8, payload, len);
    return 8 + len;
}

typedef struct {
    const char *name;
    uint8_t type;
    size_t body_len;        /* bytes after type and time */
    int64_t len_adjust;     /* added to the length field (LENGTH cases) */
    gr_jdamage_t want;
    void (*fill) (unsigned char *body);
} bad_case_t;

static void fill_zero (unsigned char *body)
{
    (void)body;
}

static void fill_batch2 (unsigned char *body)
{
    le32 (body + 4, 2); /* n = 2 */
}

static void fill_batch_huge (unsigned char *body)
{
    le32 (body + 4, 0xffffffffu);
}

static void fill_end_outcome (unsigned char *body)
{
    le32 (body + 4, 1);
    le32 (body + 8 + 36, 5); /* outcome 5 */
}

static void fill_host64 (unsigned char *body)
{
    body[12] = 64;
    memset (body + 13, 'a', 64);
}

static void fill_host_short (unsigned char *body)
{
    body[12] = 5;
    memcpy (body + 13, "abcd", 4);
}

static void fill_host_nul (unsigned char *body)
{
    body[12] = 4;
    memcpy (body + 13, "ab\0d", 4);
}

static void fill_host_ff (unsigned char *body)
{
    body[12] = 255;
}

/* A small journal of a given version, and the bad record tests put
 * after its first two records. */
typedef struct {
    gr_jrec_t r[8];
    uint64_t off[9];
    unsigned char *whole;
    unsigned char *buf;
} bad_journal_t;

static void bad_journal_init (bad_journal_t *bj, unsigned version)
{
    size_t len;
    size_t n = small_journal (bj->r);
    write_journal_v (jpath, version, bj->r, n, bj->off);
    bj->whole = get_file (jpath, &len);
    bj->buf = malloc (len + 2 * 1024);
    ck_assert_ptr_nonnull (bj->buf);
}

static void bad_journal_free (bad_journal_t *bj)
{
    free (bj->buf);
    free (bj->whole);
}

/* Good records, the bad one, then (unless its length is to run past the
 * end of the file) a good one that must not be reached. */
static void bad_journal_check (bad_journal_t *bj, const unsigned char *payload,
                               size_t plen, int64_t len_adjust, gr_jdamage_t want,
                               const char *name)
{
    const uint64_t *off = bj->off;
    memcpy (bj->buf, bj->whole, off[2]);
    size_t at = off[2];
    at += frame (bj->buf + at, (uint32_t)((int64_t)plen + len_adjust), payload, plen);
    if (len_adjust == 0) {
        memcpy (bj->buf + at, bj->whole + off[2], off[3] - off[2]);
        at += off[3] - off[2];
    }
    put_file (jpath, bj->buf, at);
    assert_damage (jpath, 2, off[2], &want, 1, name);
}

START_TEST (test_format_damage)
{
    static const bad_case_t cases[] = {
        { "type 0", 0, 4, 0, GR_JDAMAGE_FORMAT, fill_zero },
        { "type 8", 8, 4, 0, GR_JDAMAGE_FORMAT, fill_zero },
        { "type 255", 255, 30, 0, GR_JDAMAGE_FORMAT, fill_zero },
        { "run start short", GR_JREC_RUN_START, 15, 0, GR_JDAMAGE_FORMAT, fill_zero },
        { "run start long", GR_JREC_RUN_START, 17, 0, GR_JDAMAGE_FORMAT, fill_zero },
        { "run end long", GR_JREC_RUN_END, 5, 0, GR_JDAMAGE_FORMAT, fill_zero },
        { "run end empty", GR_JREC_RUN_END, 0, 0, GR_JDAMAGE_FORMAT, fill_zero },
        { "lost short", GR_JREC_WORKER_LOST, 3, 0, GR_JDAMAGE_FORMAT, fill_zero },
        { "drain short", GR_JREC_DRAIN, 11, 0, GR_JDAMAGE_FORMAT, fill_zero },
        { "worker no hostlen", GR_JREC_WORKER, 12, 0, GR_JDAMAGE_FORMAT, fill_zero },
        { "worker extra byte", GR_JREC_WORKER, 14, 0, GR_JDAMAGE_FORMAT, fill_zero },
        { "worker host 64", GR_JREC_WORKER, 13 + 64, 0, GR_JDAMAGE_FORMAT, fill_host64 },
        { "worker host short", GR_JREC_WORKER, 13 + 4, 0, GR_JDAMAGE_FORMAT, fill_host_short },
        { "worker host nul", GR_JREC_WORKER, 13 + 4, 0, GR_JDAMAGE_FORMAT, fill_host_nul },
        { "worker hostlen 255", GR_JREC_WORKER, 13, 0, GR_JDAMAGE_FORMAT, fill_host_ff },
        { "start no count", GR_JREC_TASK_START, 7, 0, GR_JDAMAGE_FORMAT, fill_zero },
        { "start n=2 one entry", GR_JREC_TASK_START, 8 + 24, 0, GR_JDAMAGE_FORMAT, fill_batch2 },
        { "start n=0 extra", GR_JREC_TASK_START, 8 + 1, 0, GR_JDAMAGE_FORMAT, fill_zero },
        { "start n=huge", GR_JREC_TASK_START, 8 + 24, 0, GR_JDAMAGE_FORMAT, fill_batch_huge },
        { "end n=2 one entry", GR_JREC_TASK_END, 8 + 72, 0, GR_JDAMAGE_FORMAT, fill_batch2 },
        { "end n=huge", GR_JREC_TASK_END, 8 + 72, 0, GR_JDAMAGE_FORMAT, fill_batch_huge },
        { "end partial entry", GR_JREC_TASK_END, 8 + 71, 0, GR_JDAMAGE_FORMAT, fill_zero },
        { "end bad outcome", GR_JREC_TASK_END, 8 + 72, 0, GR_JDAMAGE_FORMAT, fill_end_outcome },
        { "length 0", 1, 16, -25, GR_JDAMAGE_LENGTH, fill_zero },
        { "length 8", 1, 16, -17, GR_JDAMAGE_LENGTH, fill_zero },
        { "length max+1", 1, 16, (int64_t)GR_JOURNAL_MAX_RECORD + 1 - 25,
          GR_JDAMAGE_LENGTH, fill_zero },
        { "length 2^32-1", 1, 16, (int64_t)UINT32_MAX - 25, GR_JDAMAGE_LENGTH,
          fill_zero },
        /* The run start that follows says 25 bytes, but a 1,000-byte
         * length runs past the end: not a torn write. */
        { "length past end", GR_JREC_RUN_START, 16, 975, GR_JDAMAGE_LENGTH,
          fill_zero },
    };
    /* These are version 1 layouts (the v2 ones follow below). */
    bad_journal_t bj;
    bad_journal_init (&bj, 1);
    for (size_t c = 0; c < sizeof (cases) / sizeof (cases[0]); c++) {
        const bad_case_t *bc = &cases[c];
        unsigned char payload[512];
        memset (payload, 0, sizeof (payload));
        payload[0] = bc->type;
        memcpy (payload + 1, &(double){ 1.0 }, 8);
        bc->fill (payload + 9);
        bad_journal_check (&bj, payload, 9 + bc->body_len, bc->len_adjust, bc->want,
                           bc->name);
    }
    bad_journal_free (&bj);
}
END_TEST

/* Version 2 task records with a correct CRC that no writer makes.  Bodies
 * are what follows type and time: u32 worker, u32 n, entries. */
#define KEY8 "\x11\x22\x33\x44\x55\x66\x77\x88"
#define N1 "\0\0\0\0" "\x01\0\0\0"
#define N2 "\0\0\0\0" "\x02\0\0\0"
#define RAW24 "\0\0\0\0\0\0\0\0" "\0\0\0\0\0\0\0\0" "\0\0\0\0\0\0\0\0"

typedef struct {
    const char *name;
    uint8_t type;
    const char *body;
    size_t body_len;        /* sizeof the literal, less its NUL */
    int64_t len_adjust;
    gr_jdamage_t want;
} bad_v2_t;

#define BAD_V2(name, type, body, adj, want)                                     \
    { name, type, body, sizeof (body) - 1, adj, want }

START_TEST (test_format_damage_v2)
{
    static const bad_v2_t cases[] = {
        BAD_V2 ("varint of 11 bytes", GR_JREC_TASK_START,
                N1 "\x01" KEY8 "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00", 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("varint above 2^64", GR_JREC_TASK_START,
                N1 "\x01" KEY8 "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("varint cut by the record's end", GR_JREC_TASK_START,
                N1 "\x01" KEY8 "\x80", 0, GR_JDAMAGE_FORMAT),
        BAD_V2 ("varint of 10 bytes cut", GR_JREC_TASK_END,
                N1 "\x40" KEY8 "\xff\xff\xff\xff\xff\xff\xff\xff\xff", 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("def above 2^32-1", GR_JREC_TASK_START,
                N1 "\x02" KEY8 "\x80\x80\x80\x80\x10", 0, GR_JDAMAGE_FORMAT),
        BAD_V2 ("attempt above 2^32-1", GR_JREC_TASK_END,
                N1 "\x04" KEY8 "\xff\xff\xff\xff\x7f", 0, GR_JDAMAGE_FORMAT),
        BAD_V2 ("exit code above 2^32-1", GR_JREC_TASK_END,
                N1 "\x08" KEY8 "\x80\x80\x80\x80\x10\x00\x00\x00", 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("signal above 2^32-1", GR_JREC_TASK_END,
                N1 "\x08" KEY8 "\x00\x80\x80\x80\x80\x10\x00\x00", 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("outcome 5", GR_JREC_TASK_END, N1 "\x08" KEY8 "\x00\x00\x00\x05", 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("status with three fields", GR_JREC_TASK_END,
                N1 "\x08" KEY8 "\x00\x00\x00", 0, GR_JDAMAGE_FORMAT),
        BAD_V2 ("start flag 0x08", GR_JREC_TASK_START, N1 "\x08" KEY8, 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("start flag 0x80", GR_JREC_TASK_START, N1 "\x80" KEY8 RAW24, 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("raw and wall", GR_JREC_TASK_END, N1 "\x90" KEY8 RAW24 "\x01", 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("raw and cpu", GR_JREC_TASK_END, N1 "\xa0" KEY8 RAW24 "\x01\x01", 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("raw times cut", GR_JREC_TASK_END,
                N1 "\x80" KEY8 "\0\0\0\0\0\0\0\0" "\0\0\0\0\0\0\0", 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("cpu with one varint", GR_JREC_TASK_END, N1 "\x20" KEY8 "\x01", 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("key cut", GR_JREC_TASK_END, N1 "\x00\x11\x22\x33\x44", 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("n=2, room for one", GR_JREC_TASK_START, N2 "\x00" KEY8, 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("n=2, second entry cut", GR_JREC_TASK_START,
                N2 "\x01" KEY8 "\x02" "\x00\x11\x22\x33\x44\x55\x66\x77", 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("byte after the last entry", GR_JREC_TASK_START, N1 "\x00" KEY8 "\x00",
                0, GR_JDAMAGE_FORMAT),
        BAD_V2 ("n=0 and a byte", GR_JREC_TASK_END, "\0\0\0\0\0\0\0\0\x00", 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("n=2^32-1", GR_JREC_TASK_END, "\0\0\0\0\xff\xff\xff\xff" "\x00" KEY8,
                0, GR_JDAMAGE_FORMAT),
        BAD_V2 ("no count", GR_JREC_TASK_START, "\0\0\0\0\x01\0\0", 0,
                GR_JDAMAGE_FORMAT),
        /* Past the end of the file, with every entry in view: its real
         * length is known, so this is a bad length, not a torn write. */
        BAD_V2 ("length past end, entries whole", GR_JREC_TASK_START, N1 "\x00" KEY8, 5,
                GR_JDAMAGE_LENGTH),
        BAD_V2 ("length past end, n=0", GR_JREC_TASK_END, "\0\0\0\0\0\0\0\0", 1,
                GR_JDAMAGE_LENGTH),
        BAD_V2 ("length past end, too long for n", GR_JREC_TASK_START,
                N1 "\x01" KEY8 "\x80", 100, GR_JDAMAGE_LENGTH),
        BAD_V2 ("length past end, bad entry", GR_JREC_TASK_START, N2 "\x08" KEY8, 9,
                GR_JDAMAGE_LENGTH),
        /* Past the end inside an entry that could go on: a torn write. */
        BAD_V2 ("torn inside a varint", GR_JREC_TASK_START, N1 "\x01" KEY8 "\x80", 1,
                GR_JDAMAGE_TORN),
        /* Quarantine: level, on, failures, until, namelen, name. */
        BAD_V2 ("quarantine no namelen", GR_JREC_QUARANTINE,
                "\0\0\0\0" "\0\0\0\0" "\0\0\0\0" "\0\0\0\0\0\0\0\0", 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("quarantine name short", GR_JREC_QUARANTINE,
                "\0\0\0\0" "\0\0\0\0" "\0\0\0\0" "\0\0\0\0\0\0\0\0" "\x05" "abcd", 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("quarantine name long", GR_JREC_QUARANTINE,
                "\0\0\0\0" "\0\0\0\0" "\0\0\0\0" "\0\0\0\0\0\0\0\0" "\x03" "abcd", 0,
                GR_JDAMAGE_FORMAT),
        BAD_V2 ("quarantine name nul", GR_JREC_QUARANTINE,
                "\0\0\0\0" "\0\0\0\0" "\0\0\0\0" "\0\0\0\0\0\0\0\0" "\x04" "ab\0d",
                0, GR_JDAMAGE_FORMAT),
        BAD_V2 ("quarantine namelen 64", GR_JREC_QUARANTINE,
                "\0\0\0\0" "\0\0\0\0" "\0\0\0\0" "\0\0\0\0\0\0\0\0" "\x40"
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                0, GR_JDAMAGE_FORMAT),
        BAD_V2 ("quarantine length past end", GR_JREC_QUARANTINE,
                "\0\0\0\0" "\0\0\0\0" "\0\0\0\0" "\0\0\0\0\0\0\0\0" "\x02" "ab",
                3, GR_JDAMAGE_LENGTH),
        BAD_V2 ("type 9", 9, "\0\0\0\0", 0, GR_JDAMAGE_FORMAT),
    };
    bad_journal_t bj;
    bad_journal_init (&bj, 2);
    for (size_t c = 0; c < sizeof (cases) / sizeof (cases[0]); c++) {
        const bad_v2_t *bc = &cases[c];
        unsigned char payload[512];
        payload[0] = bc->type;
        memcpy (payload + 1, &(double){ 1.0 }, 8);
        memcpy (payload + 9, bc->body, bc->body_len);
        bad_journal_check (&bj, payload, 9 + bc->body_len, bc->len_adjust, bc->want,
                           bc->name);
    }
    bad_journal_free (&bj);
}
END_TEST

/* A random version 2 entry, well formed more often than not: a flag byte
 * and key, then the fields its flags call for, as varints of 1 to 5 bytes
 * (now and then one of 10 or 11 bytes, or cut short), or raw times. */
static size_t random_entry_v2 (gr_rng_t *rng, unsigned char *p, bool is_start,
                               bool keyed)
{
    static const unsigned nvar[] = { 1, 1, 1, 4 };  /* INDEX DEF ATTEMPT STATUS */
    unsigned char *q = p;
    unsigned f = (unsigned)gr_rng_next (rng) & (is_start ? 0x07 : 0xff);
    if ((f & 0x80) && gr_rng_next (rng) % 4 != 0)
        f &= ~0x30u;
    *q++ = (unsigned char)f;
    if (keyed) {
        random_bytes (rng, q, 8);
        q += 8;
    }
    unsigned count = 0;
    for (unsigned bit = 0; bit < 4; bit++)
        count += (f >> bit & 1) ? nvar[bit] : 0;
    count += (f & 0x10 ? 1 : 0) + (f & 0x20 ? 2 : 0) + (f & 0x40 ? 1 : 0);
    if (f & 0x80) {
        random_bytes (rng, q, 24);
        q += 24;
    }
    for (unsigned v = 0; v < count; v++) {
        uint64_t r = gr_rng_next (rng);
        size_t len = r % 64 == 0 ? 10 + r / 64 % 2 : 1 + r / 64 % 5;
        random_bytes (rng, q, len);
        for (size_t k = 0; k + 1 < len; k++)
            q[k] |= 0x80;
        q[len - 1] &= r % 97 == 0 ? 0xff : 0x7f;
        /* Small values, so outcomes and such often pass. */
        if (len == 1 && r % 3 == 0)
            q[0] &= 0x03;
        q += len;
    }
    return (size_t)(q - p);
}

/* One CRC-valid record alone in a journal of the given version: it parses
 * or is FORMAT damage, and nothing is read out of bounds (run under
 * valgrind or ASan).  Returns whether it parsed; one that parsed is
 * appended again by gridrun, and must replay the same. */
static bool fuzz_one (unsigned version, const unsigned char *payload, size_t plen)
{
    unsigned char out[4096];
    memcpy (out, GR_JOURNAL_MAGIC, GR_JOURNAL_HDR_LEN);
    out[GR_JOURNAL_HDR_LEN - 1] = (unsigned char)version;
    size_t l = GR_JOURNAL_HDR_LEN + frame (out + GR_JOURNAL_HDR_LEN, (uint32_t)plen,
                                           payload, plen);
    put_file (jpath, out, l);
    gr_journal_info_t info;
    recs_t got = { 0 };
    replay_ok (jpath, &got, &info);
    if (info.damage != GR_JDAMAGE_NONE) {
        ck_assert_int_eq (info.damage, GR_JDAMAGE_FORMAT);
        ck_assert_uint_eq (got.n, 0);
        recs_free (&got);
        return false;
    }
    ck_assert_uint_eq (got.n, 1);
    char again[160];
    snprintf (again, sizeof (again), "%s/again", tmpdir);
    unlink (again);
    write_journal_v (again, version, got.v, 1, NULL);
    recs_t got2 = { 0 };
    replay_ok (again, &got2, &info);
    assert_recs_eq_v (&got2, got.v, 1, version);
    recs_free (&got2);
    recs_free (&got);
    return true;
}

START_TEST (test_fuzz_parse)
{
    unsigned version = (unsigned)_i; /* looped over the format versions */
    gr_rng_t rng;
    gr_rng_seed (&rng, 99);
    unsigned char payload[2048];
    int parsed = 0;
    for (int rep = 0; rep < 3000; rep++) {
        size_t plen = 9 + (size_t)(gr_rng_next (&rng) % 200);
        random_bytes (&rng, payload, plen);
        payload[0] = (unsigned char)(gr_rng_next (&rng) % 9);
        bool batch = payload[0] == GR_JREC_TASK_START || payload[0] == GR_JREC_TASK_END;
        /* Often make the count or host length agree, to get past them. */
        if (version == 1 && rep % 3 == 0 && plen >= 17) {
            uint32_t esize = payload[0] == GR_JREC_TASK_END ? 72 : 24;
            plen = 17 + esize * ((plen - 17) / esize);
            le32 (payload + 13, (uint32_t)((plen - 17) / esize));
            for (size_t k = 17 + 36; k + 4 <= plen; k += 72)
                if (payload[0] == GR_JREC_TASK_END)
                    le32 (payload + k, (uint32_t)(gr_rng_next (&rng) % 6));
        }
        if (version >= 2 && rep % 3 == 0 && batch) {
            /* Entries after their grammar; now and then a wrong count or a
             * flipped byte. */
            uint32_t n = (uint32_t)(gr_rng_next (&rng) % 6);
            plen = 17;
            for (uint32_t i = 0; i < n; i++)
                plen += random_entry_v2 (&rng, payload + plen,
                                         payload[0] == GR_JREC_TASK_START, version == 2);
            uint64_t r = gr_rng_next (&rng);
            le32 (payload + 13, r % 8 == 0 ? n + 1 : r % 8 == 1 && n ? n - 1 : n);
            if (r % 8 == 2) {
                size_t at = 9 + (size_t)(r / 8 % (plen - 9));
                payload[at] ^= (unsigned char)(1u << (r / 1024 % 8));
            }
        }
        if (rep % 3 == 1 && payload[0] == GR_JREC_WORKER && plen >= 22) {
            payload[21] = (unsigned char)(plen - 22);
        }
        parsed += fuzz_one (version, payload, plen);
    }
    printf ("# fuzz v%u: %d of 3000 random CRC-valid records parsed\n", version, parsed);
    fflush (stdout);
    ck_assert_int_gt (parsed, 0);
}
END_TEST

/* Records gridrun wrote, a few bytes changed, the CRC made to match:
 * each parses or is FORMAT damage. */
START_TEST (test_fuzz_mutate)
{
    unsigned version = (unsigned)_i; /* looped over the format versions */
    gr_jrec_t r[8];
    uint64_t off[9];
    size_t n = small_journal (r);
    write_journal_v (jpath, version, r, n, off);
    size_t len;
    unsigned char *whole = get_file (jpath, &len);
    gr_rng_t rng;
    gr_rng_seed (&rng, 4242);
    unsigned char payload[2048];
    int parsed = 0;
    for (int rep = 0; rep < 4000; rep++) {
        /* The two batches, mostly. */
        size_t i = rep % 4 == 3 ? (size_t)(gr_rng_next (&rng) % n)
                                : (size_t)(2 + rep % 2);
        size_t plen = (size_t)(off[i + 1] - off[i]) - 8;
        memcpy (payload, whole + off[i] + 8, plen);
        int changes = 1 + (int)(gr_rng_next (&rng) % 3);
        for (int c = 0; c < changes; c++) {
            /* Past type and time: a new byte, or one bit flipped. */
            uint64_t x = gr_rng_next (&rng);
            size_t at = 9 + (size_t)(x % (plen - 9));
            if (x / 4096 % 2)
                payload[at] = (unsigned char)(x >> 16);
            else
                payload[at] ^= (unsigned char)(1u << (x >> 16) % 8);
        }
        parsed += fuzz_one (version, payload, plen);
    }
    printf ("# mutate v%u: %d of 4000 changed records parsed\n", version, parsed);
    fflush (stdout);
    free (whole);
}
END_TEST

START_TEST (test_reopen_after_damage)
{
    unsigned version = (unsigned)_i; /* looped over the format versions */
    gr_jrec_t r[16];
    uint64_t off[9];
    size_t n = small_journal (r);
    write_journal_v (jpath, version, r, n, off);
    /* A torn tail: half of a copy of record 3. */
    size_t len;
    unsigned char *whole = get_file (jpath, &len);
    int fd = open (jpath, O_WRONLY | O_APPEND);
    ck_assert_int_ge (fd, 0);
    size_t half = (size_t)(off[4] - off[3]) / 2;
    ck_assert_int_eq (write (fd, whole + off[3], half), (ssize_t)half);
    close (fd);

    gr_journal_info_t info;
    gr_error_t e;
    ck_assert_int_eq (gr_journal_replay (jpath, NULL, NULL, &info, &e), 0);
    ck_assert_int_eq (info.damage, GR_JDAMAGE_TORN);
    ck_assert_uint_eq (info.valid_len, off[n]);
    ck_assert_uint_eq (info.file_len, off[n] + half);

    /* A valid length beyond the file is refused: replay is stale. */
    gr_journal_opts_t o = quiet_opts ();
    ck_assert_ptr_null (gr_journal_open (jpath, info.file_len + 1, &o, &e));
    ck_assert_ptr_nonnull (strstr (e.text, jpath));
    ck_assert_ptr_null (gr_journal_open (jpath, 3, &o, &e));

    gr_journal_t *j = gr_journal_open (jpath, info.valid_len, &o, &e);
    ck_assert_msg (j != NULL, "%s", e.text);
    ck_assert_uint_eq (file_size (jpath), off[n]);
    /* Append the first four records again, as a resume would. */
    for (size_t i = 0; i < 4; i++) {
        ck_assert_int_eq (gr_journal_append (j, &r[i], &e), 0);
        r[n + i] = r[i];
    }
    ck_assert_int_eq (gr_journal_close (j, &e), 0);

    recs_t got = { 0 };
    replay_ok (jpath, &got, &info);
    ck_assert_int_eq (info.damage, GR_JDAMAGE_NONE);
    assert_recs_eq_v (&got, r, n + 4, version);
    recs_free (&got);

    /* valid_len 0 keeps the file and appends at its end. */
    j = gr_journal_open (jpath, 0, &o, &e);
    ck_assert_ptr_nonnull (j);
    ck_assert_int_eq (gr_journal_append (j, &r[n - 1], &e), 0);
    r[n + 4] = r[n - 1];
    ck_assert_int_eq (gr_journal_close (j, &e), 0);
    replay_ok (jpath, &got, &info);
    ck_assert_int_eq (info.damage, GR_JDAMAGE_NONE);
    assert_recs_eq_v (&got, r, n + 5, version);
    recs_free (&got);
    free (whole);
}
END_TEST

START_TEST (test_header)
{
    static const struct {
        const char *name;
        const char *data;
        size_t len;
        const char *phrase;
    } cases[] = {
        { "text", "hello world\n", 12, "is not a gridrun journal" },
        { "empty", "", 0, "is not a gridrun journal" },
        { "short", "GRJ", 3, "is not a gridrun journal" },
        { "seven", "GRJNL\0\0", 7, "is not a gridrun journal" },
        { "version 4", "GRJNL\0\0\4", 8, "format version 4" },
        { "version 255", "GRJNL\0\0\377", 8, "format version 255" },
        { "version 0", "GRJNL\0\0\0", 8, "format version 0" },
    };
    char path[160];
    gr_error_t e;
    for (size_t c = 0; c < sizeof (cases) / sizeof (cases[0]); c++) {
        snprintf (path, sizeof (path), "%s/%s", tmpdir, cases[c].name);
        put_file (path, cases[c].data, cases[c].len);
        errno = 0;
        e.text[0] = '\0';
        ck_assert_ptr_null (gr_journal_open (path, 0, NULL, &e));
        ck_assert_int_eq (errno, EINVAL);
        ck_assert_msg (strstr (e.text, path) && strstr (e.text, cases[c].phrase),
                       "%s: '%s'", cases[c].name, e.text);
        gr_journal_info_t info;
        e.text[0] = '\0';
        ck_assert_int_eq (gr_journal_replay (path, NULL, NULL, &info, &e), -1);
        ck_assert_int_eq (errno, EINVAL);
        ck_assert_msg (strstr (e.text, path) && strstr (e.text, cases[c].phrase),
                       "%s: '%s'", cases[c].name, e.text);
        /* Refusing does not touch the file. */
        ck_assert_uint_eq (file_size (path), cases[c].len);
    }

    /* Missing: replay says so; open creates it, 0600, header only. */
    snprintf (path, sizeof (path), "%s/new", tmpdir);
    ck_assert_int_eq (gr_journal_replay (path, NULL, NULL, NULL, &e), -1);
    ck_assert_int_eq (errno, ENOENT);
    ck_assert_ptr_nonnull (strstr (e.text, path));
    gr_journal_t *j = gr_journal_open (path, 0, NULL, &e);
    ck_assert_ptr_nonnull (j);
    ck_assert_int_eq (gr_journal_close (j, &e), 0);
    struct stat st;
    ck_assert_int_eq (stat (path, &st), 0);
    ck_assert_int_eq (st.st_mode & 0777, 0600);
    size_t len;
    unsigned char *data = get_file (path, &len);
    ck_assert_uint_eq (len, GR_JOURNAL_HDR_LEN);
    ck_assert (memcmp (data, GR_JOURNAL_MAGIC, GR_JOURNAL_HDR_LEN) == 0);
    /* New journals are version 3. */
    ck_assert (memcmp (data, "GRJNL\0\0\3", GR_JOURNAL_HDR_LEN) == 0);
    free (data);
    gr_journal_info_t info;
    recs_t got = { 0 };
    replay_ok (path, &got, &info);
    ck_assert_uint_eq (got.n, 0);
    ck_assert_uint_eq (info.records, 0);
    ck_assert_int_eq (info.damage, GR_JDAMAGE_NONE);
    ck_assert_uint_eq (info.valid_len, GR_JOURNAL_HDR_LEN);
    ck_assert_uint_eq (info.file_len, GR_JOURNAL_HDR_LEN);
    ck_assert_uint_eq (info.version, 3);

    /* A version 1 journal with no records: read, and appended to. */
    snprintf (path, sizeof (path), "%s/v1", tmpdir);
    put_file (path, "GRJNL\0\0\1", GR_JOURNAL_HDR_LEN);
    replay_ok (path, &got, &info);
    ck_assert_uint_eq (info.records, 0);
    ck_assert_uint_eq (info.version, 1);
    j = gr_journal_open (path, 0, NULL, &e);
    ck_assert_ptr_nonnull (j);
    ck_assert_int_eq (gr_journal_close (j, &e), 0);

    /* A directory, and a missing parent. */
    ck_assert_ptr_null (gr_journal_open (tmpdir, 0, NULL, &e));
    ck_assert_ptr_nonnull (strstr (e.text, tmpdir));
    ck_assert_int_eq (gr_journal_replay (tmpdir, NULL, NULL, NULL, &e), -1);
    ck_assert_ptr_nonnull (strstr (e.text, tmpdir));
    snprintf (path, sizeof (path), "%s/no/such/journal", tmpdir);
    ck_assert_ptr_null (gr_journal_open (path, 0, NULL, &e));
    ck_assert_ptr_nonnull (strstr (e.text, "no/such"));
}
END_TEST

START_TEST (test_reader_stops)
{
    gr_jrec_t r[8];
    size_t n = small_journal (r);
    write_journal (jpath, r, n, NULL);
    recs_t got = { .stop_at = 3 };
    gr_journal_info_t info;
    gr_error_t e;
    ck_assert_int_eq (gr_journal_replay (jpath, collect, &got, &info, &e), -1);
    ck_assert_int_eq (errno, EINTR);
    ck_assert_ptr_nonnull (strstr (e.text, jpath));
    ck_assert_uint_eq (got.n, 3);
    ck_assert_uint_eq (info.records, 2);
    recs_free (&got);
}
END_TEST

/* A write that fails part way.  RLIMIT_FSIZE makes write() stop at a chosen
 * size with EFBIG, without root or a full filesystem; SIGXFSZ is ignored so
 * the process sees the error instead of dying. */
START_TEST (test_write_failure)
{
    gr_jrec_t r[8];
    uint64_t off[9];
    size_t n = small_journal (r);
    write_journal (jpath, r, 2, off);
    uint64_t good = off[2];

    gr_error_t e;
    gr_journal_opts_t o = quiet_opts ();
    gr_journal_t *j = gr_journal_open (jpath, 0, &o, &e);
    ck_assert_ptr_nonnull (j);
    for (size_t i = 2; i < n; i++)
        ck_assert_int_eq (gr_journal_append (j, &r[i], &e), 0);

    struct rlimit old, lim;
    ck_assert_int_eq (getrlimit (RLIMIT_FSIZE, &old), 0);
    void (*oldsig) (int) = signal (SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = good + 50;
    ck_assert_int_eq (setrlimit (RLIMIT_FSIZE, &lim), 0);
    int rc = gr_journal_maybe_sync (j, gr_journal_due (j), &e);
    int err = errno;
    uint64_t after = file_size (jpath);
    ck_assert_int_eq (setrlimit (RLIMIT_FSIZE, &old), 0);
    signal (SIGXFSZ, oldsig);

    ck_assert_int_eq (rc, -1);
    ck_assert_int_eq (err, EFBIG);
    ck_assert_ptr_nonnull (strstr (e.text, jpath));
    ck_assert_ptr_nonnull (strstr (e.text, "resumed"));
    /* The torn bytes were cut off: the file is what was committed. */
    ck_assert_uint_eq (after, good);
    ck_assert_uint_eq (replay_count (jpath), 2);
    gr_journal_stats_t st;
    gr_journal_get_stats (j, &st);
    ck_assert_uint_eq (st.syncs, 0);
    ck_assert (gr_journal_due (j) > 0);

    /* The retry writes everything, once. */
    ck_assert_int_eq (gr_journal_sync (j, &e), 0);
    ck_assert_int_eq (gr_journal_close (j, &e), 0);
    recs_t got = { 0 };
    gr_journal_info_t info;
    replay_ok (jpath, &got, &info);
    ck_assert_int_eq (info.damage, GR_JDAMAGE_NONE);
    assert_recs_eq (&got, r, n);
    recs_free (&got);
}
END_TEST

/* The pinned journal of format version 1 (tests/data/journal-v1.bin, made
 * by an encoder written from doc/journal-format.md, not by this code).  A
 * format change that breaks old journals fails here. */

static gr_jstart_t fx_starts[2] = {
    JSTART (0xefc46cde4dc87bb3ULL, 0, 0, 1),
    JSTART (0x1111222233334444ULL, 1, 0, 1),
};
static gr_jend_t fx_ends[2] = {
    JEND (0xefc46cde4dc87bb3ULL, 0, 0, 1, 0, 0, 0, GR_JOUT_DONE, 1.5, 1.25, 0.125,
      20480),
    JEND (0x1111222233334444ULL, 1, 0, 1, 3, 0, 1, GR_JOUT_RETRY, 0.75, 0.5,
      0.0625, 1024),
};
static gr_jend_t fx_end2 = JEND (0x5555666677778888ULL, 7, 2, 3, -1, 9, 2,
                                 GR_JOUT_REQUEUED, 30.5, 0.0, 0.0, -1);

static size_t fixture_records (gr_jrec_t *r)
{
    size_t n = 0;
    r[n] = (gr_jrec_t){ .type = GR_JREC_RUN_START, .time = 1700000000.25 };
    r[n].run_start.spec_hash = 0x0123456789abcdefULL;
    r[n].run_start.incarnation = 1;
    r[n++].run_start.nworkers = 2;
    r[n] = (gr_jrec_t){ .type = GR_JREC_WORKER, .time = 1700000000.5 };
    r[n].worker.rank = 1;
    r[n].worker.cpus = 8;
    r[n].worker.gpus = 1;
    strcpy (r[n++].worker.host, "node001");
    r[n] = (gr_jrec_t){ .type = GR_JREC_WORKER, .time = 1700000000.5 };
    r[n].worker.rank = 2;
    r[n].worker.cpus = 8;
    r[n].worker.gpus = 0;
    strcpy (r[n++].worker.host, "node002.example.org");
    r[n] = (gr_jrec_t){ .type = GR_JREC_TASK_START, .time = 1700000001.0 };
    r[n].start.worker = 1;
    r[n].start.n = 2;
    r[n++].start.tasks = fx_starts;
    r[n] = (gr_jrec_t){ .type = GR_JREC_TASK_END, .time = 1700000002.0 };
    r[n].end.worker = 1;
    r[n].end.n = 2;
    r[n++].end.tasks = fx_ends;
    r[n] = (gr_jrec_t){ .type = GR_JREC_TASK_START, .time = 1700000003.0 };
    r[n].start.worker = 2;
    r[n++].start.n = 0;
    r[n] = (gr_jrec_t){ .type = GR_JREC_WORKER_LOST, .time = 1700000004.0 };
    r[n++].lost.rank = 2;
    r[n] = (gr_jrec_t){ .type = GR_JREC_DRAIN, .time = 1700000005.0 };
    r[n].drain.reason = 15;
    r[n++].drain.deadline = 1700000065.0;
    r[n] = (gr_jrec_t){ .type = GR_JREC_TASK_END, .time = 1700000006.0 };
    r[n].end.worker = 1;
    r[n].end.n = 1;
    r[n++].end.tasks = &fx_end2;
    r[n] = (gr_jrec_t){ .type = GR_JREC_RUN_END, .time = 1700000007.0 };
    r[n++].run_end.exit_code = 75;
    return n;
}

START_TEST (test_fixture_v1)
{
    gr_jrec_t r[16];
    size_t n = fixture_records (r);
    const char *fixture = DATA "/journal-v1.bin";

    recs_t got = { 0 };
    gr_journal_info_t info;
    replay_ok (fixture, &got, &info);
    ck_assert_int_eq (info.damage, GR_JDAMAGE_NONE);
    ck_assert_uint_eq (info.version, 1);
    assert_recs_eq_v (&got, r, n, 1);
    recs_free (&got);

    /* And today's writer, appending to a version 1 journal, produces the
     * same bytes. */
    write_journal_v (jpath, 1, r, n, NULL);
    assert_same_file (fixture, jpath);
}
END_TEST

/* The pinned journal of format version 2 (tests/data/journal-v2.bin, made
 * by tests/data/mkjournal.py, an encoder written from
 * doc/journal-format.md).  Its entries set every flag bit. */

static gr_jstart_t fx2_starts[4] = {
    JSTART (0xefc46cde4dc87bb3ULL, 0, 0, 1),
    JSTART (0x1111222233334444ULL, 1, 0, 1),
    JSTART (0x5555666677778888ULL, 7, 2, 3),
    JSTART (0x9999aaaabbbbccccULL, 3, 2, 1),
};
static gr_jend_t fx2_ends[2] = {
    JEND (0xefc46cde4dc87bb3ULL, 0, 0, 1, 0, 0, 0, GR_JOUT_DONE, 1.5, 1.25, 0.125,
      20480),
    JEND (0x1111222233334444ULL, 1, 0, 1, 3, 0, 1, GR_JOUT_RETRY, 0.75, 0.5,
      0.0625, 20480),
};
static gr_jend_t fx2_ends2[4] = {
    JEND (0x5555666677778888ULL, 7, 2, 3, -1, 9, 2, GR_JOUT_REQUEUED, 30.5, 0.0,
      0.0, -1),
    /* 1.5 us is kept as 2 us. */
    JEND (0x9999aaaabbbbccccULL, 3, 2, 1, 0, 0, 0, GR_JOUT_DONE, 0.0000015, 0.0,
      0.0, -1),
    JEND (UINT64_MAX, UINT64_MAX, UINT32_MAX, UINT32_MAX, INT32_MIN, INT32_MAX,
      UINT32_MAX, GR_JOUT_FAILED, -1.0, INFINITY, -0.0, INT64_MAX),
    JEND (0, 0, 0, 1, 0, 0, 0, GR_JOUT_DONE, 0.0, 0.0, 0.0, 0),
};

static size_t fixture_records_v2 (gr_jrec_t *r)
{
    size_t n = fixture_records (r);
    /* Record 3 and 4: more entries; record 8: four ends. */
    r[3].start.n = 4;
    r[3].start.tasks = fx2_starts;
    r[4].end.tasks = fx2_ends;
    r[8].end.n = 4;
    r[8].end.tasks = fx2_ends2;
    /* Two quarantine records before the run's end. */
    r[n + 1] = r[n - 1];
    r[n - 1] = (gr_jrec_t){ .type = GR_JREC_QUARANTINE, .time = 1700000006.5 };
    r[n - 1].quarantine.level = 2;
    r[n - 1].quarantine.on = 1;
    r[n - 1].quarantine.failures = 3;
    r[n - 1].quarantine.until = 1700000606.5;
    strcpy (r[n - 1].quarantine.name, "rack r1");
    r[n] = (gr_jrec_t){ .type = GR_JREC_QUARANTINE, .time = 1700000006.75 };
    r[n].quarantine.level = 2;
    r[n].quarantine.failures = 3;
    return n + 2;
}

/* Looped over versions 2 and 3: version 3 is the same records without
 * keys (tests/data/journal-v3.bin, made by the same script). */
START_TEST (test_fixture_v2)
{
    unsigned version = (unsigned)_i;
    gr_jrec_t r[16];
    size_t n = fixture_records_v2 (r);
    char fixture[512];
    snprintf (fixture, sizeof (fixture), DATA "/journal-v%u.bin", version);

    recs_t got = { 0 };
    gr_journal_info_t info;
    replay_ok (fixture, &got, &info);
    ck_assert_int_eq (info.damage, GR_JDAMAGE_NONE);
    ck_assert_uint_eq (info.version, version);
    assert_recs_eq_v (&got, r, n, version);
    ck_assert_uint_eq (got.v[8].end.tasks[2].key, version == 2 ? UINT64_MAX : 0);
    ck_assert_uint_eq (got.v[8].end.tasks[2].index, UINT64_MAX);
    /* The documented rounding, spelled out. */
    ck_assert (same_f64 (got.v[8].end.tasks[1].wall, 2e-6));
    ck_assert (same_f64 (got.v[8].end.tasks[2].stime, -0.0));
    ck_assert (same_f64 (got.v[8].end.tasks[2].utime, INFINITY));
    ck_assert_int_eq (got.v[8].end.tasks[2].exit_code, INT32_MIN);
    ck_assert_int_eq (got.v[8].end.tasks[2].maxrss_kb, INT64_MAX);
    ck_assert_int_eq (got.v[8].end.tasks[3].maxrss_kb, 0);
    recs_free (&got);

    /* And today's writer produces the same bytes. */
    write_journal_v (jpath, version, r, n, NULL);
    assert_same_file (fixture, jpath);
}
END_TEST

/* An existing journal is appended to in its own version; replay reads
 * the old records and the new ones alike. */
START_TEST (test_append_keeps_version)
{
    for (unsigned version = 1; version <= 3; version++) {
        gr_jrec_t r[16];
        size_t n = version == 1 ? fixture_records (r) : fixture_records_v2 (r);
        char src[512];
        snprintf (src, sizeof (src), DATA "/journal-v%u.bin", version);
        size_t len;
        unsigned char *data = get_file (src, &len);
        put_file (jpath, data, len);
        free (data);

        gr_journal_info_t info;
        gr_error_t e;
        ck_assert_int_eq (gr_journal_replay (jpath, NULL, NULL, &info, &e), 0);
        gr_journal_opts_t o = quiet_opts ();
        gr_journal_t *j = gr_journal_open (jpath, info.valid_len, &o, &e);
        ck_assert_msg (j != NULL, "%s", e.text);
        /* A one-entry batch: 8 + 17 + 24 bytes in version 1; 8 + 17 + 9
         * (flags and key) in version 2; 8 + 17 + 1 (flags) in version 3. */
        gr_jstart_t t = JSTART (0xabcdefULL, 0, 0, 1);
        r[n] = (gr_jrec_t){ .type = GR_JREC_TASK_START, .time = 1700000008.0 };
        r[n].start.worker = 1;
        r[n].start.n = 1;
        r[n].start.tasks = &t;
        ck_assert_int_eq (gr_journal_append (j, &r[n], &e), 0);
        /* A quarantine record: version 1 has no such type, and leaves it
         * out. */
        gr_jrec_t q = { .type = GR_JREC_QUARANTINE, .time = 1700000009.0 };
        q.quarantine.on = 1;
        strcpy (q.quarantine.name, "node h2");
        ck_assert_int_eq (gr_journal_append (j, &q, &e), 0);
        if (version >= 2)
            r[++n] = q;
        ck_assert_int_eq (gr_journal_close (j, &e), 0);
        ck_assert_uint_eq (file_size (jpath), len + 8 + 17
                                                  + (version == 1 ? 24 : version == 2 ? 9 : 1)
                                                  + (version == 1 ? 0 : 8 + 30 + 7));

        data = get_file (jpath, &len);
        ck_assert_uint_eq (data[GR_JOURNAL_HDR_LEN - 1], version);
        free (data);
        recs_t got = { 0 };
        replay_ok (jpath, &got, &info);
        ck_assert_uint_eq (info.version, version);
        ck_assert_int_eq (info.damage, GR_JDAMAGE_NONE);
        assert_recs_eq_v (&got, r, n + 1, version);
        recs_free (&got);
        unlink (jpath);
    }
}
END_TEST

/* Values at the edges of every field, in an order that defeats the
 * deltas, round trip in both versions (durations to 1 us in version 2). */
START_TEST (test_extremes)
{
    unsigned version = (unsigned)_i; /* looped over the format versions */
    static const uint64_t idx[] = { UINT64_MAX, 0, 1, 5, 4, 4, UINT64_MAX - 1, 0,
                                    1ULL << 63, (1ULL << 63) - 1, 1000000, 999999,
                                    3, 1ULL << 32, 2 };
    static const uint32_t u32s[] = { 0, 1, 2, 127, 128, 16383, 16384, UINT32_MAX,
                                     UINT32_MAX - 1, 7 };
    static const int32_t i32s[] = { 0, -1, 1, INT32_MIN, INT32_MAX, -64, 64, 255, -9 };
    static const int64_t i64s[] = { 0, -1, INT64_MIN, INT64_MAX, 1LL << 40, 20480,
                                    20480, -(1LL << 40), 1 };
    const double durs[] = { 0.0, -0.0, 1e-7, 4.99e-7, 5e-7, 1.5, 0.1 + 0.2,
                            8.99e9, 9e9, 1e300, INFINITY, -INFINITY, NAN, -1.0,
                            5e-324, 3600.000001, 1.0000005, 123.4567891 };
    enum { N = 300 };
    size_t nidx = sizeof (idx) / sizeof (idx[0]);
    size_t nu = sizeof (u32s) / sizeof (u32s[0]);
    size_t ni = sizeof (i32s) / sizeof (i32s[0]);
    size_t nl = sizeof (i64s) / sizeof (i64s[0]);
    size_t nd = sizeof (durs) / sizeof (durs[0]);
    gr_jstart_t *ts = calloc (N, sizeof (*ts));
    gr_jend_t *te = calloc (N, sizeof (*te));
    ck_assert (ts && te);
    for (size_t i = 0; i < N; i++) {
        /* Runs of plain entries between the odd ones, as in real runs. */
        bool plain = i % 5 != 0;
        uint64_t index = plain && i > 0 ? te[i - 1].index + 1 : idx[i / 5 % nidx];
        uint32_t def = plain && i > 0 ? te[i - 1].def : u32s[i % nu];
        ts[i] = (gr_jstart_t)JSTART (i % 7 == 0 ? UINT64_MAX - i : gr_hash64 (&i, sizeof (i)),
                                     index, def, plain ? 1 : u32s[(i / 3) % nu]);
        te[i] = (gr_jend_t)JEND (ts[i].key, index, def, ts[i].attempt,
                                 plain ? 0 : i32s[i % ni], plain ? 0 : i32s[(i / 2) % ni],
                                 plain ? 0 : u32s[(i / 4) % nu], (uint32_t)(i / 5 % 5),
                                 durs[i % nd], durs[(i / 3) % nd], durs[(i / 7) % nd],
                                 i64s[i / 2 % nl]);
    }
    gr_jrec_t r[4];
    r[0] = (gr_jrec_t){ .type = GR_JREC_TASK_START, .time = 1.0 };
    r[0].start.worker = UINT32_MAX;
    r[0].start.n = N;
    r[0].start.tasks = ts;
    r[1] = (gr_jrec_t){ .type = GR_JREC_TASK_END, .time = 2.0 };
    r[1].end.worker = 0;
    r[1].end.n = N;
    r[1].end.tasks = te;
    r[2] = (gr_jrec_t){ .type = GR_JREC_TASK_END, .time = 3.0 };
    r[2].end.worker = 1;
    r[2].end.n = 0;
    r[3] = (gr_jrec_t){ .type = GR_JREC_TASK_START, .time = 4.0 };
    r[3].start.worker = 1;
    r[3].start.n = 0;
    write_journal_v (jpath, version, r, 4, NULL);
    recs_t got = { 0 };
    gr_journal_info_t info;
    replay_ok (jpath, &got, &info);
    ck_assert_int_eq (info.damage, GR_JDAMAGE_NONE);
    assert_recs_eq_v (&got, r, 4, version);

    /* What version 2 does to durations, spelled out. */
    if (version == 2) {
        static const struct {
            double in, out;
        } want[] = {
            { 1e-7, 0.0 }, { 4e-7, 0.0 }, { 6e-7, 1e-6 }, { 1.5, 1.5 },
            { 0.1 + 0.2, 0.3 }, { 8.99e9, 8.99e9 }, { 3600.000001, 3600.000001 },
            { 123.4567891, 123.456789 }, { 5e-324, 0.0 },
        };
        for (size_t k = 0; k < sizeof (want) / sizeof (want[0]); k++)
            ck_assert_msg (same_f64 (kept (want[k].in, 2), want[k].out),
                           "%.17g kept as %.17g, want %.17g", want[k].in,
                           kept (want[k].in, 2), want[k].out);
        for (size_t i = 0; i < N; i++) {
            const gr_jend_t *g = &got.v[1].end.tasks[i];
            ck_assert (fabs (g->wall - te[i].wall) <= 0.5e-6 || !(fabs (te[i].wall) < 9e9)
                       || same_f64 (g->wall, te[i].wall));
        }
    }
    recs_free (&got);
    free (ts);
    free (te);
}
END_TEST

/* The point of versions 2 and 3: a no-op task, started and ended in
 * batches of consecutive indexes, costs 9 + 9 bytes in version 2 and
 * 1 + 1 in version 3, and its share of two batch headers (25 bytes
 * each), where version 1 takes 24 + 72. */
START_TEST (test_compact_size)
{
    enum { BATCH = 256 };
    gr_jstart_t s[BATCH];
    gr_jend_t en[BATCH];
    for (uint32_t i = 0; i < BATCH; i++) {
        uint64_t index = 1000 + i;
        s[i] = (gr_jstart_t)JSTART (gr_hash64 (&index, sizeof (index)), index, 0, 1);
        en[i] = (gr_jend_t){ .key = s[i].key, .index = index, .attempt = 1 };
    }
    for (unsigned version = 1; version <= 3; version++) {
        unsigned entry = version == 2 ? 9 : 1;
        gr_error_t e;
        gr_journal_opts_t o = quiet_opts ();
        unlink (jpath);
        gr_journal_t *j = open_version (jpath, version, &o, &e);
        ck_assert_ptr_nonnull (j);
        gr_jrec_t r = { .type = GR_JREC_TASK_START, .time = 1.0 };
        r.start.worker = 1;
        r.start.n = BATCH;
        r.start.tasks = s;
        ck_assert_int_eq (gr_journal_append (j, &r, &e), 0);
        gr_journal_stats_t st;
        gr_journal_get_stats (j, &st);
        /* The first entry's index, 1000, is a delta from 0: 2 bytes more. */
        uint64_t want = version == 1 ? 25 + 24 * BATCH : 25 + entry * BATCH + 2;
        ck_assert_uint_eq (st.bytes, want);
        r = (gr_jrec_t){ .type = GR_JREC_TASK_END, .time = 2.0 };
        r.end.worker = 1;
        r.end.n = BATCH;
        r.end.tasks = en;
        ck_assert_int_eq (gr_journal_append (j, &r, &e), 0);
        gr_journal_get_stats (j, &st);
        want += version == 1 ? 25 + 72 * BATCH : 25 + entry * BATCH + 2;
        ck_assert_uint_eq (st.bytes, want);
        printf ("# version %u: %.2f bytes per no-op task in batches of %d\n", version,
                (double)st.bytes / BATCH, BATCH);
        fflush (stdout);
        ck_assert_int_eq (gr_journal_close (j, &e), 0);
        recs_t got = { 0 };
        gr_journal_info_t info;
        replay_ok (jpath, &got, &info);
        ck_assert_uint_eq (got.n, 2);
        for (uint32_t i = 0; i < BATCH; i++) {
            ck_assert (start_eq (&got.v[0].start.tasks[i], &s[i], version));
            ck_assert (end_eq (&got.v[1].end.tasks[i], &en[i], version));
        }
        recs_free (&got);
    }
}
END_TEST

static int count_entries (const gr_jrec_t *rec, void *arg)
{
    uint64_t *count = arg;
    if (rec->type == GR_JREC_TASK_END)
        *count += rec->end.n;
    return 0;
}

/* Not a timed assertion: the rates are printed for people to read. */
START_TEST (test_perf)
{
    enum { TOTAL = 1000000, BATCH = 256 };
    gr_jend_t batch[BATCH];
    gr_error_t e;
    gr_journal_opts_t o;
    gr_journal_opts_init (&o);
    o.nosync = true;
    gr_journal_t *j = gr_journal_open (jpath, 0, &o, &e);
    ck_assert_ptr_nonnull (j);

    double t0 = gr_now ();
    uint64_t done = 0;
    while (done < TOTAL) {
        uint32_t k = TOTAL - done < BATCH ? (uint32_t)(TOTAL - done) : BATCH;
        for (uint32_t i = 0; i < k; i++)
            batch[i] = (gr_jend_t){ .key = done + i, .index = done + i,
                                    .attempt = 1, .outcome = GR_JOUT_DONE,
                                    .wall = 1.0, .maxrss_kb = 1000 };
        gr_jrec_t r = { .type = GR_JREC_TASK_END, .time = 1.0 };
        r.end.worker = (uint32_t)(done / BATCH % 64) + 1;
        r.end.n = k;
        r.end.tasks = batch;
        ck_assert_int_eq (gr_journal_append (j, &r, &e), 0);
        ck_assert_int_ge (gr_journal_maybe_sync (j, gr_now (), &e), 0);
        done += k;
    }
    ck_assert_int_eq (gr_journal_close (j, &e), 0);
    double t_append = gr_now () - t0;

    uint64_t count = 0;
    gr_journal_info_t info;
    t0 = gr_now ();
    ck_assert_int_eq (gr_journal_replay (jpath, count_entries, &count, &info,
                                         &e), 0);
    double t_replay = gr_now () - t0;
    ck_assert_uint_eq (count, TOTAL);
    ck_assert_uint_eq (info.records, (TOTAL + BATCH - 1) / BATCH);
    ck_assert_int_eq (info.damage, GR_JDAMAGE_NONE);
    printf ("# append+write (nosync): %d task ends in %.3f s: %.2f M/s\n",
            TOTAL, t_append, TOTAL / t_append / 1e6);
    printf ("# replay: %" PRIu64 " records, %.1f MB in %.3f s: %.2f M task "
            "ends/s, %.0f MB/s\n", info.records, info.file_len / 1e6, t_replay,
            TOTAL / t_replay / 1e6, info.file_len / t_replay / 1e6);
    fflush (stdout);
}
END_TEST


/* Background mode: commits hand buffers to the writer thread, and when
 * too much waits for it the caller waits.  Whatever the interleaving,
 * every record reaches the file once and in order. */
static int count_ends (const gr_jrec_t *rec, void *arg)
{
    uint64_t *next = arg;
    if (rec->type != GR_JREC_TASK_END)
        return 0;
    for (uint32_t i = 0; i < rec->end.n; i++) {
        if (rec->end.tasks[i].index != *next)
            return -1;
        (*next)++;
    }
    return 0;
}

START_TEST (test_background)
{
    gr_error_t e;
    gr_journal_opts_t o;
    gr_journal_opts_init (&o);
    o.background = true;
    o.commit_interval = 0;
    gr_journal_t *j = gr_journal_open (jpath, 0, &o, &e);
    ck_assert_ptr_nonnull (j);
    enum { BATCH = 256, ROUNDS = 4000 };
    gr_jend_t ends[BATCH];
    memset (ends, 0, sizeof (ends));
    uint64_t key = 0;
    int started = 0;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < BATCH; i++)
            ends[i].index = key++;
        gr_jrec_t rec = {.type = GR_JREC_TASK_END, .time = 1};
        rec.end.worker = 1;
        rec.end.n = BATCH;
        rec.end.tasks = ends;
        ck_assert_int_eq (gr_journal_append (j, &rec, &e), 0);
        int rc = gr_journal_maybe_sync (j, gr_now () + 1, &e);
        ck_assert_int_ge (rc, 0);
        started += rc;
    }
    ck_assert_int_eq (gr_journal_sync (j, &e), 0);
    gr_journal_stats_t st;
    gr_journal_get_stats (j, &st);
    ck_assert_int_gt (started, 1);
    ck_assert_uint_ge (st.syncs, 2);
    ck_assert_int_eq (gr_journal_close (j, &e), 0);
    uint64_t next = 0;
    gr_journal_info_t info;
    ck_assert_int_eq (gr_journal_replay (jpath, count_ends, &next, &info, &e), 0);
    ck_assert_uint_eq (next, (uint64_t)BATCH * ROUNDS);
    ck_assert_int_eq (info.damage, GR_JDAMAGE_NONE);
    fprintf (stdout, "# background: %d commits started, %" PRIu64 " syncs, %zu MB\n",
             started, st.syncs, (size_t)(info.valid_len >> 20));
}
END_TEST

/* Version 3 codes a run of plain entries (the next index, the same def
 * and maxrss_kb, attempt 1, no status, no time) as zero bytes, testing
 * them in a loop of their own; each field that makes an entry not plain
 * must end the run, and the entry after it must start one again. */
START_TEST (test_plain_runs)
{
    enum { N = 40 };
    gr_jstart_t st[N];
    gr_jend_t en[N];
    uint64_t index = 0;
    for (uint32_t i = 0; i < N; i++) {
        st[i] = (gr_jstart_t){ .index = index, .attempt = 1 };
        en[i] = (gr_jend_t){ .index = index, .attempt = 1, .outcome = GR_JOUT_DONE };
        index += i == 4 ? 5 : 1;
        en[i].maxrss_kb = i >= 2 ? 100 : 0;
    }
    st[6].def = en[6].def = 2;
    st[8].attempt = en[8].attempt = 2;
    st[9].def = en[9].def = 1; /* and on: a new def for the rest */
    for (uint32_t i = 10; i < N; i++)
        st[i].def = en[i].def = 1;
    en[11].exit_code = 1;
    en[13].signal = 9;
    en[15].flags = 1;
    en[17].outcome = GR_JOUT_RETRY;
    en[19].wall = 1.0;
    en[21].utime = 0.5;
    en[23].stime = 0.25;
    en[25].wall = -0.0;
    en[27].maxrss_kb = 7;
    en[29].maxrss_kb = 100;
    en[31].stime = -0.0;

    gr_jrec_t r[2] = { { .type = GR_JREC_TASK_START, .time = 1 },
                       { .type = GR_JREC_TASK_END, .time = 2 } };
    r[0].start.worker = r[1].end.worker = 1;
    r[0].start.n = r[1].end.n = N;
    r[0].start.tasks = st;
    r[1].end.tasks = en;
    write_journal (jpath, r, 2, NULL);
    recs_t got = { 0 };
    gr_journal_info_t info;
    replay_ok (jpath, &got, &info);
    assert_recs_eq (&got, r, 2);
    ck_assert_int_eq (info.damage, GR_JDAMAGE_NONE);
    recs_free (&got);
}
END_TEST

/* r, written alone to a new journal, replays as w. */
static void write_replays_as (const gr_jrec_t *r, const gr_jrec_t *w)
{
    write_journal (jpath, r, 1, NULL);
    recs_t got = {0};
    gr_journal_info_t info;
    replay_ok (jpath, &got, &info);
    assert_recs_eq (&got, w, 1);
    recs_free (&got);
}

/* plain_after at its limits, for r (a batch of starts or of ends, which
 * the caller replayed already): version 2 (which codes keys, which plain
 * entries would lack) refuses it, naming the kind of entry; a count over
 * GR_JOURNAL_PLAIN_MAX (*over set to one) is refused with nothing added;
 * a batch of 1100 entries at the most splits into 2 records, and every
 * entry replays once and in order (count, counting from index 0). */
static void plain_limits (gr_jrec_t *r, uint32_t *over, const char *kind,
                          int (*count) (const gr_jrec_t *, void *))
{
    bool start = r->type == GR_JREC_TASK_START;
    gr_error_t e;
    gr_journal_opts_t o = quiet_opts ();
    gr_journal_t *j = open_version (jpath, 2, &o, &e);
    ck_assert_ptr_nonnull (j);
    errno = 0;
    ck_assert_int_eq (gr_journal_append (j, r, &e), -1);
    ck_assert_int_eq (errno, EINVAL);
    ck_assert_ptr_nonnull (strstr (e.text, kind));
    ck_assert_ptr_nonnull (strstr (e.text, "format version 2"));
    ck_assert_int_eq (gr_journal_close (j, &e), 0);
    unlink (jpath);
    j = gr_journal_open (jpath, 0, &o, &e);
    ck_assert_ptr_nonnull (j);
    *over = GR_JOURNAL_PLAIN_MAX + 1;
    errno = 0;
    ck_assert_int_eq (gr_journal_append (j, r, &e), -1);
    ck_assert_int_eq (errno, EINVAL);
    gr_journal_stats_t js;
    gr_journal_get_stats (j, &js);
    ck_assert_uint_eq (js.records, 0);

    enum { N = 1100 };
    gr_jstart_t *bs = calloc (N, sizeof (*bs));
    gr_jend_t *be = calloc (N, sizeof (*be));
    ck_assert (bs && be);
    for (uint32_t i = 0; i < N; i++) {
        uint64_t index = (uint64_t)i * (GR_JOURNAL_PLAIN_MAX + 1);
        bs[i] = (gr_jstart_t){.index = index, .attempt = 1, .plain_after = GR_JOURNAL_PLAIN_MAX};
        be[i] = (gr_jend_t){.index = index, .attempt = 1, .plain_after = GR_JOURNAL_PLAIN_MAX};
    }
    gr_jrec_t big = *r;
    if (start) {
        big.start.n = N;
        big.start.tasks = bs;
    }
    else {
        big.end.n = N;
        big.end.tasks = be;
    }
    ck_assert_msg (gr_journal_append (j, &big, &e) == 0, "%s", e.text);
    gr_journal_get_stats (j, &js);
    ck_assert_uint_eq (js.records, 2);
    ck_assert_int_eq (gr_journal_close (j, &e), 0);
    uint64_t next = 0;
    gr_journal_info_t info;
    ck_assert_int_eq (gr_journal_replay (jpath, count, &next, &info, &e), 0);
    ck_assert_uint_eq (next, (uint64_t)N * (GR_JOURNAL_PLAIN_MAX + 1));
    ck_assert_int_eq (info.damage, GR_JDAMAGE_NONE);
    free (bs);
    free (be);
}

static int count_starts (const gr_jrec_t *rec, void *arg)
{
    uint64_t *next = arg;
    if (rec->type != GR_JREC_TASK_START)
        return 0;
    for (uint32_t i = 0; i < rec->start.n; i++) {
        if (rec->start.tasks[i].index != *next || rec->start.tasks[i].attempt != 1
            || rec->start.tasks[i].plain_after != 0)
            return -1;
        (*next)++;
    }
    return 0;
}

/* plain_after: an end entry stands for that many plain ones after it,
 * which replay gives as entries of their own, after a plain entry or a
 * full one; a batch of them splits into records like any other.  Version
 * 2 and a count over GR_JOURNAL_PLAIN_MAX are refused. */
START_TEST (test_plain_after)
{
    gr_jend_t st[4] = {
        {.index = 10, .def = 1, .attempt = 1, .exit_code = 3, .maxrss_kb = 50,
         .plain_after = 3},
        {.index = 14, .def = 1, .attempt = 1, .maxrss_kb = 50, .plain_after = 2},
        {.index = 100, .def = 2, .attempt = 1, .maxrss_kb = 7},
        {.index = 101, .def = 2, .attempt = 1, .wall = 1.0, .maxrss_kb = 7,
         .plain_after = 5},
    };
    gr_jend_t want[16];
    size_t nw = 0;
    for (size_t i = 0; i < 4; i++) {
        want[nw] = st[i];
        want[nw++].plain_after = 0;
        for (uint32_t k = 1; k <= st[i].plain_after; k++)
            want[nw++] = (gr_jend_t){.index = st[i].index + k, .def = st[i].def,
                                     .attempt = 1, .outcome = GR_JOUT_DONE,
                                     .maxrss_kb = st[i].maxrss_kb};
    }
    ck_assert_uint_eq (nw, 14);
    gr_jrec_t r = {.type = GR_JREC_TASK_END, .time = 2};
    r.end.worker = 1;
    r.end.n = 4;
    r.end.tasks = st;
    gr_jrec_t w = r;
    w.end.n = (uint32_t)nw;
    w.end.tasks = want;
    write_replays_as (&r, &w);

    plain_limits (&r, &st[2].plain_after, "an end entry", count_ends);
}
END_TEST

/* plain_after of starts, as of ends: the plain starts after an entry (the
 * next indexes, its def, attempt 1), after a plain entry or a full one
 * (an attempt 2, a new def, a gap in the indexes), replay as entries of
 * their own; version 2 and a count over GR_JOURNAL_PLAIN_MAX are refused;
 * a batch of them splits into records. */
START_TEST (test_plain_after_starts)
{
    gr_jstart_t st[5] = {
        JSTART (0, 0, 0, 1),  /* plain after the record's start: index 0, def 0 */
        JSTART (0, 40, 0, 2), /* a gap and an attempt 2 */
        JSTART (0, 50, 3, 1), /* a new def */
        JSTART (0, 54, 3, 1), /* a gap only */
        JSTART (0, 60, 3, 1),
    };
    st[0].plain_after = 4;
    st[1].plain_after = 2;
    st[2].plain_after = 3;
    st[3].plain_after = 0;
    st[4].plain_after = 7;
    gr_jstart_t want[32];
    size_t nw = 0;
    for (size_t i = 0; i < 5; i++) {
        want[nw] = st[i];
        want[nw++].plain_after = 0;
        for (uint32_t k = 1; k <= st[i].plain_after; k++)
            want[nw++] = (gr_jstart_t)JSTART (0, st[i].index + k, st[i].def, 1);
    }
    ck_assert_uint_eq (nw, 21);
    gr_jrec_t r = {.type = GR_JREC_TASK_START, .time = 1};
    r.start.worker = 2;
    r.start.n = 5;
    r.start.tasks = st;
    gr_jrec_t w = r;
    w.start.n = (uint32_t)nw;
    w.start.tasks = want;
    write_replays_as (&r, &w);
    /* 21 entries: 5 heads (the first a zero byte too, the next four with
     * their fields), 16 zero bytes. */
    struct stat sb;
    ck_assert_int_eq (stat (jpath, &sb), 0);
    unlink (jpath);
    gr_jstart_t flat[32];
    memcpy (flat, want, sizeof (flat));
    r.start.n = (uint32_t)nw;
    r.start.tasks = flat;
    write_journal (jpath, &r, 1, NULL);
    struct stat sf;
    ck_assert_int_eq (stat (jpath, &sf), 0);
    ck_assert_int_eq (sb.st_size, sf.st_size); /* the same bytes either way */
    unlink (jpath);
    r.start.n = 5;
    r.start.tasks = st;
    plain_limits (&r, &st[3].plain_after, "a start entry", count_starts);
}
END_TEST

/* The one definition of "plain" that the encoder and the master share.
 * The master tests an end in place: its fields from outcome to attempt in
 * one structure, those from wall to flags in another; here in two buffers
 * at odd offsets, with the bytes around them (the master's member field
 * where gr_jend_t has plain_after) set.  Every field must count. */
static bool plain_split (const gr_jend_t *e, uint64_t next, uint32_t def, int64_t rss)
{
    unsigned char head[80], tail[96];
    size_t hlen = offsetof (gr_jend_t, attempt) + 4 - offsetof (gr_jend_t, outcome);
    size_t tlen = offsetof (gr_jend_t, flags) + 4 - offsetof (gr_jend_t, wall);
    memset (head, 0xa5, sizeof (head));
    memset (tail, 0x5a, sizeof (tail));
    memcpy (head + 3, e, hlen);
    memcpy (tail + 5, &e->wall, tlen);
    return gr_jend_plain (head + 3, tail + 5, next, def, rss);
}

START_TEST (test_plain_predicates)
{
    gr_jend_t base = {.outcome = GR_JOUT_DONE, .def = 4, .index = 77, .key = 0x1234,
                      .attempt = 1, .pad1 = 9, .maxrss_kb = 2048, .plain_after = 3};
    ck_assert (gr_jend_plain (&base, &base.wall, 77, 4, 2048));
    ck_assert (plain_split (&base, 77, 4, 2048));
    /* The expectation: index, def, maxrss_kb. */
    ck_assert (!plain_split (&base, 78, 4, 2048));
    ck_assert (!plain_split (&base, 76, 4, 2048));
    ck_assert (!plain_split (&base, 77, 5, 2048));
    ck_assert (!plain_split (&base, 77, 4, 2047));
    ck_assert (!plain_split (&base, 77 | (1ull << 40), 4, 2048));
    /* Each field of the entry. */
    for (int f = 0; f < 12; f++) {
        gr_jend_t e = base;
        switch (f) {
            case 0: e.outcome = GR_JOUT_REQUEUED; break;
            case 1: e.def = 5; break;
            case 2: e.index = 78; break;
            case 3: e.attempt = 2; break;
            case 4: e.attempt = 0; break;
            case 5: e.wall = -0.0; break;
            case 6: e.utime = 1e-300; break;
            case 7: e.stime = 0.5; break;
            case 8: e.maxrss_kb = -2048; break;
            case 9: e.exit_code = 1; break;
            case 10: e.signal = 15; break;
            case 11: e.flags = 1u << 31; break;
        }
        ck_assert_msg (!plain_split (&e, 77, 4, 2048), "field %d", f);
        ck_assert_msg (!gr_jend_plain (&e, &e.wall, 77, 4, 2048), "field %d", f);
    }
    /* key, pad1 and plain_after are not part of it. */
    gr_jend_t e = base;
    e.key = 0;
    e.pad1 = 0;
    e.plain_after = 0;
    ck_assert (gr_jend_plain (&e, &e.wall, 77, 4, 2048));

    ck_assert (gr_jstart_plain (77, 4, 1, 77, 4));
    ck_assert (!gr_jstart_plain (78, 4, 1, 77, 4));
    ck_assert (!gr_jstart_plain (77 | (1ull << 63), 4, 1, 77, 4));
    ck_assert (!gr_jstart_plain (77, 5, 1, 77, 4));
    ck_assert (!gr_jstart_plain (77, 4, 2, 77, 4));
    ck_assert (!gr_jstart_plain (77, 4, 0, 77, 4));
    ck_assert (gr_jstart_plain (0, 0, 1, UINT64_MAX + (uint64_t)1, 0)); /* a record's first */
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("journal");
    TCase *tc = tcase_create ("journal");
    tcase_add_checked_fixture (tc, setup, teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_opts_defaults);
    /* Loop tests run once per format version: _i is 1, then 2. */
    tcase_add_loop_test (tc, test_roundtrip, 1, 4);
    tcase_add_loop_test (tc, test_split_batch, 1, 4);
    tcase_add_loop_test (tc, test_extremes, 1, 4);
    tcase_add_test (tc, test_compact_size);
    tcase_add_test (tc, test_plain_runs);
    tcase_add_test (tc, test_plain_after);
    tcase_add_test (tc, test_plain_after_starts);
    tcase_add_test (tc, test_plain_predicates);
    tcase_add_test (tc, test_group_commit);
    tcase_add_test (tc, test_bad_append);
    tcase_add_loop_test (tc, test_truncate, 1, 4);
    tcase_add_loop_test (tc, test_bitflip, 1, 4);
    tcase_add_loop_test (tc, test_garbage_tail, 1, 4);
    tcase_add_loop_test (tc, test_random_file, 1, 4);
    tcase_add_test (tc, test_format_damage);
    tcase_add_test (tc, test_format_damage_v2);
    tcase_add_loop_test (tc, test_fuzz_parse, 1, 4);
    tcase_add_loop_test (tc, test_fuzz_mutate, 1, 4);
    tcase_add_loop_test (tc, test_reopen_after_damage, 1, 4);
    tcase_add_test (tc, test_header);
    tcase_add_test (tc, test_reader_stops);
    tcase_add_test (tc, test_write_failure);
    tcase_add_test (tc, test_fixture_v1);
    tcase_add_loop_test (tc, test_fixture_v2, 2, 4);
    tcase_add_test (tc, test_append_keeps_version);
    tcase_add_test (tc, test_perf);
    tcase_add_test (tc, test_background);
    suite_add_tcase (s, tc);
    return gr_check_main (s);
}
