/* Unit tests for src/spec: parsing, validation messages, expansion, keys,
 * templating of hostile values, packing.
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "src/common/error.h"
#include "src/common/hash.h"
#include "src/spec/spec.h"

extern char **environ;

#define DATA TEST_DATA_DIR

/* ------------------------------------------------------------------ */
/* Helpers. */

static gr_spec_t *load_ok (const char *name)
{
    char path[4096];
    gr_spec_t *s = NULL;
    gr_error_t e = {{0}};

    snprintf (path, sizeof (path), "%s/%s", DATA, name);
    ck_assert_msg (gr_spec_load (path, &s, &e) == 0, "%s: %s", name, e.text);
    ck_assert_ptr_nonnull (s);
    return s;
}

static gr_spec_t *parse_ok (const char *text)
{
    gr_spec_t *s = NULL;
    gr_error_t e = {{0}};

    ck_assert_msg (gr_spec_parse (text, strlen (text), "mem.yaml", NULL, 0, &s, &e) == 0,
                   "%s", e.text);
    return s;
}

/* Parse text that must fail; returns the message in a static buffer. */
static uint64_t parse_ok_hash (const char *text)
{
    gr_spec_t *s = parse_ok (text);
    uint64_t h = s->hash;
    gr_spec_destroy (s);
    return h;
}

static const char *parse_err (const char *text)
{
    static gr_error_t e;
    gr_spec_t *s = NULL;

    memset (&e, 0, sizeof (e));
    ck_assert_int_eq (gr_spec_parse (text, strlen (text), "mem.yaml", NULL, 0, &s, &e), -1);
    ck_assert_ptr_null (s);
    ck_assert_int_ne (errno, 0);
    return e.text;
}

static double now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Run argv with stdout into a pipe; return what it printed (malloc'd). */
static char *run_capture (char *const argv[], size_t *lenp, int *statusp)
{
    int fd[2];
    pid_t pid;
    posix_spawn_file_actions_t fa;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int status;

    ck_assert_int_eq (pipe (fd), 0);
    posix_spawn_file_actions_init (&fa);
    posix_spawn_file_actions_adddup2 (&fa, fd[1], 1);
    posix_spawn_file_actions_addclose (&fa, fd[0]);
    posix_spawn_file_actions_addclose (&fa, fd[1]);
    ck_assert_int_eq (posix_spawnp (&pid, argv[0], &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy (&fa);
    close (fd[1]);
    for (;;) {
        ssize_t n;
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            buf = realloc (buf, cap);
            ck_assert_ptr_nonnull (buf);
        }
        n = read (fd[0], buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        ck_assert_int_ge (n, 0);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close (fd[0]);
    ck_assert_int_eq (waitpid (pid, &status, 0), pid);
    buf[len] = '\0';
    *lenp = len;
    if (statusp)
        *statusp = status;
    return buf;
}

/* A growing string for building specs in memory. */
typedef struct sbuf {
    char *s;
    size_t len;
    FILE *f;
} sbuf_t;

static void sb_open (sbuf_t *b)
{
    b->s = NULL;
    b->len = 0;
    b->f = open_memstream (&b->s, &b->len);
    ck_assert_ptr_nonnull (b->f);
}

static char *sb_close (sbuf_t *b)
{
    fclose (b->f);
    return b->s;
}

/* Write s as a YAML double-quoted scalar. */
static void yaml_dq (FILE *f, const char *s)
{
    fputc ('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf (f, "\\%c", c);
        else if (c == '\n')
            fputs ("\\n", f);
        else if (c == '\t')
            fputs ("\\t", f);
        else if (c < 0x20 || c == 0x7f)
            fprintf (f, "\\x%02x", c);
        else
            fputc (c, f);
    }
    fputc ('"', f);
}

static const gr_param_t *param (const gr_taskdef_t *t, const char *name)
{
    for (size_t i = 0; i < t->nparams; i++) {
        if (strcmp (t->params[i].name, name) == 0)
            return &t->params[i];
    }
    ck_abort_msg ("no param %s", name);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Good fixtures. */

START_TEST (test_minimal)
{
    gr_spec_t *s = load_ok ("spec-good-minimal.yaml");
    const gr_taskdef_t *t = &s->tasks[0];

    ck_assert_str_eq (s->name, "minimal");
    ck_assert_uint_eq (s->ntasks, 1);
    ck_assert_uint_eq (s->total, 1);
    ck_assert (s->grace == 60);
    ck_assert_str_eq (t->name, "hello");
    ck_assert_uint_eq (t->id, 0);
    ck_assert_int_eq (t->mark.line, 3);
    ck_assert_int_eq (t->mark.col, 5);
    ck_assert_uint_eq (t->argc, 2);
    ck_assert_str_eq (t->argv[0], "echo");
    ck_assert_str_eq (t->argv[1], "hello");
    ck_assert_ptr_null (t->argv[2]);
    ck_assert_ptr_null (t->shell);
    ck_assert_int_eq (t->builtin, GR_BUILTIN_NONE);
    ck_assert_uint_eq (t->nparams, 0);
    ck_assert_uint_eq (t->count, 1);
    ck_assert_uint_eq (t->cpus, 1);
    ck_assert_uint_eq (t->gpus, 0);
    ck_assert_uint_eq (t->mem, 0);
    ck_assert (t->timeout == 0);
    ck_assert (t->kill_grace == 10);
    ck_assert_uint_eq (t->retry.max, 0);
    ck_assert (t->retry.backoff == 1);
    ck_assert (t->retry.backoff_max == 300);
    ck_assert (t->retry.jitter == 0.5);
    ck_assert_uint_eq (t->retry.crash_limit, 3);
    ck_assert_uint_eq (t->nsuccess, 1);
    ck_assert_int_eq (t->success[0], 0);
    ck_assert_uint_eq (t->nafter, 0);
    ck_assert_uint_eq (t->nenv, 0);
    ck_assert_ptr_null (t->cwd);
    ck_assert_int_eq (t->out_mode, GR_OUT_CAPTURE);
    ck_assert_int_eq (t->err_mode, GR_OUT_CAPTURE);
    ck_assert_int_eq (t->resources_mark.line, 3);
    ck_assert_ptr_eq (gr_spec_find (s, "hello"), t);
    ck_assert_ptr_null (gr_spec_find (s, "nope"));
    ck_assert_str_eq (s->path, DATA "/spec-good-minimal.yaml");
    gr_spec_destroy (s);
}
END_TEST

START_TEST (test_full)
{
    gr_spec_t *s = load_ok ("spec-good-full.yaml");
    const gr_taskdef_t *prep, *train, *wait, *report;
    const gr_param_t *p;

    ck_assert_str_eq (s->name, "full-1.0");
    ck_assert (s->grace == 120);
    ck_assert_uint_eq (s->ntasks, 4);
    ck_assert_uint_eq (s->total, 9);
    prep = gr_spec_find (s, "prep");
    train = gr_spec_find (s, "train");
    wait = gr_spec_find (s, "wait");
    report = gr_spec_find (s, "report");
    ck_assert (prep && train && wait && report);
    ck_assert_uint_eq (train->id, 1);

    /* prep: everything from defaults. */
    ck_assert_uint_eq (prep->argc, 3);
    ck_assert_str_eq (prep->argv[2], "{run_dir}/data");
    ck_assert_str_eq (prep->cwd, "work");
    ck_assert_int_eq (prep->out_mode, GR_OUT_DISCARD);
    ck_assert_int_eq (prep->err_mode, GR_OUT_STDOUT);
    ck_assert (prep->timeout == 600);
    ck_assert (prep->kill_grace == 5);
    ck_assert_uint_eq (prep->retry.max, 2);
    ck_assert_uint_eq (prep->cpus, 2);
    ck_assert_uint_eq (prep->gpus, 0);
    ck_assert_uint_eq (prep->mem, 1024ull * 1024 * 1024);
    ck_assert_int_eq (prep->resources_mark.line, 13);
    ck_assert_int_eq (prep->resources_mark.col, 3);
    ck_assert_uint_eq (prep->nenv, 2);
    ck_assert_str_eq (prep->env[0], "OMP_NUM_THREADS=1");
    ck_assert_str_eq (prep->env[1], "MODE=default");
    ck_assert_ptr_null (prep->env[2]);

    /* train: its own values override, env merges per key. */
    ck_assert_uint_eq (train->nparams, 2);
    p = param (train, "lr");
    ck_assert_int_eq (p->kind, GR_PARAM_LIST);
    ck_assert_uint_eq (p->count, 2);
    ck_assert_str_eq (p->values[0], "0.1");
    ck_assert_str_eq (p->values[1], "0.01");
    ck_assert_int_eq (p->mark.line, 25);
    ck_assert_int_eq (p->mark.col, 7);
    p = param (train, "seed");
    ck_assert_int_eq (p->kind, GR_PARAM_RANGE);
    ck_assert (p->integral);
    ck_assert_int_eq (p->ifrom, 1);
    ck_assert_int_eq (p->istep, 1);
    ck_assert_uint_eq (p->count, 3);
    ck_assert (!train->zip);
    ck_assert_uint_eq (train->count, 6);
    ck_assert_uint_eq (train->nenv, 3);
    ck_assert_str_eq (train->env[0], "OMP_NUM_THREADS=1");
    ck_assert_str_eq (train->env[1], "MODE=train");
    ck_assert_str_eq (train->env[2], "SEED={seed}");
    ck_assert_uint_eq (train->cpus, 4);
    ck_assert_uint_eq (train->gpus, 1);
    ck_assert_uint_eq (train->mem, 1536ull * 1024 * 1024);
    ck_assert_int_eq (train->resources_mark.line, 30);
    ck_assert_int_eq (train->resources_mark.col, 5);
    ck_assert (train->timeout == 5400);
    ck_assert (train->kill_grace == 5);
    ck_assert_uint_eq (train->retry.max, 3);
    ck_assert (train->retry.backoff == 2);
    ck_assert (train->retry.backoff_max == 60);
    ck_assert (train->retry.jitter == 0.25);
    ck_assert_uint_eq (train->retry.crash_limit, 2);
    ck_assert_uint_eq (train->nsuccess, 2);
    ck_assert_int_eq (train->success[0], 0);
    ck_assert_int_eq (train->success[1], 3);
    ck_assert_uint_eq (train->nafter, 1);
    ck_assert_uint_eq (train->after[0], prep->id);
    ck_assert_int_eq (train->out_mode, GR_OUT_FILE);
    ck_assert_str_eq (train->out_path, "out/{task}-{index}.log");
    ck_assert_int_eq (train->err_mode, GR_OUT_FILE);
    ck_assert_str_eq (train->err_path, "err/{lr}.log");
    ck_assert_ptr_null (train->cwd);

    /* wait: a noop with a duration. */
    ck_assert_int_eq (wait->builtin, GR_BUILTIN_NOOP);
    ck_assert_ptr_null (wait->argv);
    ck_assert_ptr_null (wait->shell);
    ck_assert (wait->noop_duration == 1.5);
    ck_assert_uint_eq (wait->nafter, 2);
    ck_assert_uint_eq (wait->after[0], prep->id);
    ck_assert_uint_eq (wait->after[1], train->id);
    ck_assert_uint_eq (wait->nsuccess, 1);
    ck_assert_int_eq (wait->success[0], 7);
    ck_assert (wait->kill_grace == 0);
    ck_assert (wait->timeout == 0);
    ck_assert_uint_eq (wait->retry.max, 2);

    /* report: shell, retries overridden to 0, other retry defaults. */
    ck_assert_str_eq (report->shell, "echo done {task} > report.txt");
    ck_assert_ptr_null (report->argv);
    ck_assert_uint_eq (report->retry.max, 0);
    ck_assert (report->retry.backoff == 1);
    ck_assert (report->retry.backoff_max == 300);
    ck_assert (report->retry.jitter == 0.5);
    ck_assert_uint_eq (report->retry.crash_limit, 3);
    ck_assert_uint_eq (report->nafter, 1);
    ck_assert_uint_eq (report->after[0], wait->id);
    gr_spec_destroy (s);
}
END_TEST

START_TEST (test_full_render)
{
    gr_spec_t *s = load_ok ("spec-good-full.yaml");
    gr_expand_t *x = gr_expand_create ();
    gr_render_ctx_t ctx = {"/r", 2};
    gr_task_cmd_t cmd;
    gr_error_t e;

    ck_assert_int_eq (gr_expand_select (x, gr_spec_find (s, "prep"), 0), 0);
    ck_assert_int_eq (gr_expand_render (x, &ctx, &cmd, &e), 0);
    ck_assert_str_eq (cmd.argv[0], "./prepare");
    ck_assert_str_eq (cmd.argv[2], "/r/data");
    ck_assert_ptr_null (cmd.argv[3]);
    ck_assert_str_eq (cmd.cwd, "work");
    ck_assert_ptr_null (cmd.out_path);
    ck_assert_ptr_null (cmd.err_path);
    ck_assert_str_eq (gr_expand_name (x), "prep");
    ck_assert_str_eq (gr_expand_params_string (x), "");

    ck_assert_int_eq (gr_expand_select (x, gr_spec_find (s, "train"), 4), 0);
    ck_assert_int_eq (gr_expand_render (x, &ctx, &cmd, &e), 0);
    ck_assert_str_eq (cmd.argv[2], "0.01");
    ck_assert_str_eq (cmd.argv[4], "2");
    ck_assert_ptr_null (cmd.argv[5]);
    ck_assert_str_eq (cmd.env[2], "SEED=2");
    ck_assert_ptr_null (cmd.env[3]);
    ck_assert_ptr_null (cmd.cwd);
    ck_assert_str_eq (cmd.out_path, "out/train-4.log");
    ck_assert_str_eq (cmd.err_path, "err/0.01.log");
    ck_assert_str_eq (gr_expand_name (x), "train[4]");
    ck_assert_str_eq (gr_expand_params_string (x), "lr=0.01 seed=2");

    ck_assert_int_eq (gr_expand_select (x, gr_spec_find (s, "wait"), 0), 0);
    ck_assert_int_eq (gr_expand_render (x, &ctx, &cmd, &e), 0);
    ck_assert_ptr_null (cmd.argv);
    ck_assert_str_eq (cmd.env[0], "OMP_NUM_THREADS=1");

    ck_assert_int_eq (gr_expand_select (x, gr_spec_find (s, "report"), 0), 0);
    ck_assert_int_eq (gr_expand_render (x, &ctx, &cmd, &e), 0);
    ck_assert_str_eq (cmd.argv[0], "/bin/sh");
    ck_assert_str_eq (cmd.argv[1], "-c");
    ck_assert_str_eq (cmd.argv[2], "echo done 'report' > report.txt");
    ck_assert_ptr_null (cmd.argv[3]);

    gr_expand_destroy (x);
    gr_spec_destroy (s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Sweeps. */

static void expect_values (const gr_taskdef_t *t, size_t pi, const char *const *want,
                           size_t n)
{
    gr_expand_t *x = gr_expand_create ();

    ck_assert_uint_eq (t->count, n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq (gr_expand_select (x, t, i), 0);
        ck_assert_str_eq (gr_expand_value (x, pi), want[i]);
    }
    errno = 0;
    ck_assert_int_eq (gr_expand_select (x, t, n), -1);
    ck_assert_int_eq (errno, EINVAL);
    gr_expand_destroy (x);
}

START_TEST (test_product_order)
{
    gr_spec_t *s = load_ok ("spec-good-sweep.yaml");
    const gr_taskdef_t *t = gr_spec_find (s, "grid");
    static const char *const a[] = {"x", "x", "x", "x", "x", "y", "y", "y",
                                    "y", "y", "z", "z", "z", "z", "z"};
    static const char *const b[] = {"0",    "0.25", "0.5",  "0.75", "1",
                                    "0",    "0.25", "0.5",  "0.75", "1",
                                    "0",    "0.25", "0.5",  "0.75", "1"};
    const gr_param_t *pb = param (t, "b");

    ck_assert_int_eq (pb->kind, GR_PARAM_RANGE);
    ck_assert (!pb->integral);
    ck_assert (pb->from == 0 && pb->to == 1 && pb->step == 0.25);
    expect_values (t, 0, a, 15);
    expect_values (t, 1, b, 15);
    ck_assert_uint_eq (s->total, 15 + 3 + 11 + 5 + 4 + 7);
    gr_spec_destroy (s);
}
END_TEST

START_TEST (test_zip)
{
    gr_spec_t *s = load_ok ("spec-good-sweep.yaml");
    const gr_taskdef_t *t = gr_spec_find (s, "pairs");
    static const char *const n[] = {"10", "20", "30"};
    static const char *const w[] = {"ten", "twenty", "thirty"};

    ck_assert (t->zip);
    ck_assert (param (t, "n")->integral);
    ck_assert_int_eq (param (t, "n")->istep, 10);
    expect_values (t, 0, n, 3);
    expect_values (t, 1, w, 3);
    gr_spec_destroy (s);
}
END_TEST

START_TEST (test_float_range)
{
    gr_spec_t *s = load_ok ("spec-good-sweep.yaml");
    static const char *const tenths[] = {"0",   "0.1", "0.2", "0.3", "0.4", "0.5",
                                         "0.6", "0.7", "0.8", "0.9", "1"};
    static const char *const neg[] = {"-0.3", "-0.2", "-0.1", "0", "0.1", "0.2", "0.3"};

    expect_values (gr_spec_find (s, "tenths"), 0, tenths, 11);
    expect_values (gr_spec_find (s, "neg"), 0, neg, 7);
    gr_spec_destroy (s);
}
END_TEST

START_TEST (test_int_range)
{
    gr_spec_t *s = load_ok ("spec-good-sweep.yaml");
    static const char *const ints[] = {"-4", "-1", "2", "5", "8"};
    gr_spec_t *big;
    gr_expand_t *x = gr_expand_create ();

    expect_values (gr_spec_find (s, "ints"), 0, ints, 5);
    /* A step that does not land on 'to' stops before it; the extremes of
     * int64 format exactly. */
    big = parse_ok ("name: t\ntasks:\n  - name: a\n    command: [e, \"{i}\"]\n"
                    "    params: {i: {range: [-9223372036854775807, 9223372036854775807, "
                    "4611686018427387904]}}\n");
    ck_assert_uint_eq (big->tasks[0].count, 4);
    ck_assert_int_eq (gr_expand_select (x, &big->tasks[0], 3), 0);
    ck_assert_str_eq (gr_expand_value (x, 0), "4611686018427387905");
    ck_assert_int_eq (gr_expand_select (x, &big->tasks[0], 0), 0);
    ck_assert_str_eq (gr_expand_value (x, 0), "-9223372036854775807");
    gr_spec_destroy (big);
    big = parse_ok ("name: t\ntasks:\n  - name: a\n    command: [e, \"{i}\"]\n"
                    "    params: {i: {range: [1, 10, 4]}}\n");
    ck_assert_uint_eq (big->tasks[0].count, 3);
    gr_spec_destroy (big);
    gr_expand_destroy (x);
    gr_spec_destroy (s);
}
END_TEST

START_TEST (test_file_param)
{
    gr_spec_t *s = load_ok ("spec-good-sweep.yaml");
    const gr_taskdef_t *t = gr_spec_find (s, "seeds");
    static const char *const seeds[] = {"17", "42", "1001", "7 days"};

    ck_assert_int_eq (param (t, "seed")->kind, GR_PARAM_FILE);
    expect_values (t, 0, seeds, 4);
    ck_assert_uint_eq (s->nfiles, 1);
    ck_assert_str_eq (s->files[0].path, DATA "/spec-good-seeds.txt");
    ck_assert_uint_eq (s->files[0].len, 23);
    gr_spec_destroy (s);
}
END_TEST

START_TEST (test_huge_sweep)
{
    double t0 = now (), dt;
    gr_spec_t *s = load_ok ("spec-good-huge.yaml");
    const gr_taskdef_t *t = &s->tasks[0];
    gr_expand_t *x = gr_expand_create ();
    gr_task_cmd_t cmd;
    gr_error_t e;
    uint64_t sum = 0;

    dt = now () - t0;
    ck_assert_msg (dt < 0.5 * gr_test_time_scale (), "loading a 10M-task spec took %.3f s", dt);
    ck_assert_uint_eq (t->count, 10000000);
    ck_assert_uint_eq (s->total, 10000000);
    ck_assert_int_eq (gr_expand_select (x, t, 9999999), 0);
    ck_assert_str_eq (gr_expand_value (x, 0), "9999999");
    ck_assert_str_eq (gr_expand_name (x), "point[9999999]");
    ck_assert_int_eq (gr_expand_select (x, t, 10000000), -1);

    /* Once warm, the hot path allocates nothing. */
    ck_assert_int_eq (gr_expand_render (x, NULL, &cmd, &e), 0);
    ck_assert_ptr_nonnull (gr_expand_params_string (x));
    ck_assert_ptr_nonnull (gr_expand_name (x));
    {
        struct mallinfo2 before = mallinfo2 (), after;
        t0 = now ();
        for (uint64_t i = 0; i < 100000; i++) {
            gr_expand_select (x, t, i * 97 % t->count);
            sum += gr_expand_key (x);
            if (i % 100 == 0) {
                gr_expand_name (x);
                gr_expand_params_string (x);
                ck_assert_int_eq (gr_expand_render (x, NULL, &cmd, &e), 0);
            }
        }
        dt = now () - t0;
        after = mallinfo2 ();
        ck_assert_uint_eq (before.uordblks, after.uordblks);
        ck_assert_msg (dt < 10 * gr_test_time_scale (), "100000 select+key took %.3f s", dt);
    }
    ck_assert_uint_ne (sum, 0);
    gr_expand_destroy (x);
    gr_spec_destroy (s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Keys and identity. */

static int cmp_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

START_TEST (test_keys_distinct)
{
    gr_spec_t *s = load_ok ("spec-good-sweep.yaml");
    gr_expand_t *x = gr_expand_create ();
    uint64_t keys[64];
    size_t n = 0;

    for (size_t i = 0; i < s->ntasks; i++) {
        for (uint64_t k = 0; k < s->tasks[i].count; k++) {
            ck_assert_int_eq (gr_expand_select (x, &s->tasks[i], k), 0);
            ck_assert_uint_lt (n, 64);
            keys[n++] = gr_expand_key (x);
        }
    }
    ck_assert_uint_eq (n, s->total);
    qsort (keys, n, sizeof (keys[0]), cmp_u64);
    for (size_t i = 1; i < n; i++)
        ck_assert_uint_ne (keys[i], keys[i - 1]);
    gr_expand_destroy (x);
    gr_spec_destroy (s);
}
END_TEST

START_TEST (test_keys_pinned)
{
    gr_spec_t *s = load_ok ("spec-good-sweep.yaml");
    gr_spec_t *m = load_ok ("spec-good-minimal.yaml");
    gr_expand_t *x = gr_expand_create ();
    uint64_t h;

    /* These values are stored in journals: if this test breaks, resume of
     * every existing run breaks with it. */
    ck_assert_int_eq (gr_expand_select (x, &m->tasks[0], 0), 0);
    ck_assert_uint_eq (gr_expand_key (x), 0x16fe05a1c75bcd0fULL);
    ck_assert_uint_eq (gr_expand_key (x), gr_hash64 ("hello", 5));

    ck_assert_int_eq (gr_expand_select (x, gr_spec_find (s, "grid"), 1), 0);
    ck_assert_uint_eq (gr_expand_key (x), 0xe8c328a070bb6cbcULL);
    h = gr_hash64_update (GR_HASH64_INIT, "grid", 4);
    h = gr_hash64_update (h, "\0a=x\0b=0.25", 11);
    ck_assert_uint_eq (gr_expand_key (x), gr_hash64_final (h));
    gr_expand_destroy (x);
    gr_spec_destroy (s);
    gr_spec_destroy (m);
}
END_TEST

START_TEST (test_keys_stable)
{
    gr_spec_t *a = load_ok ("spec-good-sweep.yaml");
    gr_spec_t *b = load_ok ("spec-good-sweep.yaml");
    gr_spec_t *c = NULL;
    gr_expand_t *x = gr_expand_create (), *y = gr_expand_create ();
    gr_error_t e;
    void *buf;
    size_t len;

    ck_assert_uint_eq (a->hash, b->hash);
    ck_assert_int_eq (gr_spec_pack (a, &buf, &len), 0);
    ck_assert_msg (gr_spec_unpack (buf, len, &c, &e) == 0, "%s", e.text);
    free (buf);
    ck_assert_uint_eq (c->hash, a->hash);
    ck_assert_uint_eq (c->total, a->total);
    ck_assert_str_eq (c->path, a->path);
    ck_assert_uint_eq (c->ntasks, a->ntasks);
    for (size_t i = 0; i < a->ntasks; i++) {
        ck_assert_str_eq (a->tasks[i].name, c->tasks[i].name);
        for (uint64_t k = 0; k < a->tasks[i].count; k++) {
            ck_assert_int_eq (gr_expand_select (x, &a->tasks[i], k), 0);
            ck_assert_int_eq (gr_expand_select (y, &b->tasks[i], k), 0);
            ck_assert_uint_eq (gr_expand_key (x), gr_expand_key (y));
            ck_assert_int_eq (gr_expand_select (y, &c->tasks[i], k), 0);
            ck_assert_uint_eq (gr_expand_key (x), gr_expand_key (y));
            ck_assert_str_eq (gr_expand_params_string (x), gr_expand_params_string (y));
        }
    }
    gr_expand_destroy (x);
    gr_expand_destroy (y);
    gr_spec_destroy (a);
    gr_spec_destroy (b);
    gr_spec_destroy (c);
}
END_TEST

/* Write a file or fail the test. */
static void write_file (const char *path, const char *data)
{
    FILE *f = fopen (path, "w");
    ck_assert_ptr_nonnull (f);
    fputs (data, f);
    ck_assert_int_eq (fclose (f), 0);
}

START_TEST (test_pack_without_disk)
{
    char dir[] = "/tmp/gr-spec-pack-XXXXXX";
    char spath[256], vpath[256];
    gr_spec_t *a = NULL, *b = NULL;
    gr_error_t e;
    void *buf;
    size_t len;

    ck_assert_ptr_nonnull (mkdtemp (dir));
    snprintf (spath, sizeof (spath), "%s/job.yaml", dir);
    snprintf (vpath, sizeof (vpath), "%s/vals.txt", dir);
    write_file (spath, "name: p\ntasks:\n  - name: a\n    command: [e, \"{v}\"]\n"
                       "    params: {v: {file: vals.txt}}\n");
    write_file (vpath, "one\ntwo\n");
    ck_assert_msg (gr_spec_load (spath, &a, &e) == 0, "%s", e.text);
    ck_assert_int_eq (gr_spec_pack (a, &buf, &len), 0);
    /* The receiver must not need the file: it ships in the buffer. */
    ck_assert_int_eq (unlink (vpath), 0);
    ck_assert_msg (gr_spec_unpack (buf, len, &b, &e) == 0, "%s", e.text);
    ck_assert_uint_eq (b->hash, a->hash);
    ck_assert_uint_eq (b->tasks[0].count, 2);
    ck_assert_str_eq (b->tasks[0].params[0].values[1], "two");
    ck_assert_uint_eq (b->nfiles, 1);
    gr_spec_destroy (b);
    b = NULL;
    /* Damaged buffers are refused, never read past. */
    for (size_t cut = 0; cut < len; cut += 7) {
        gr_spec_t *d = NULL;
        ck_assert_int_eq (gr_spec_unpack (buf, cut, &d, &e), -1);
        ck_assert_ptr_null (d);
    }
    ((char *)buf)[0] = 'X';
    ck_assert_int_eq (gr_spec_unpack (buf, len, &b, &e), -1);
    ck_assert_ptr_null (b);
    free (buf);
    /* And without the file, loading from disk fails at the file: node. */
    ck_assert_int_eq (gr_spec_load (spath, &b, &e), -1);
    ck_assert_msg (strstr (e.text, "job.yaml:5:18: ") != NULL, "%s", e.text);
    unlink (spath);
    rmdir (dir);
    gr_spec_destroy (a);
}
END_TEST

START_TEST (test_hash_normalized)
{
    gr_spec_t *a = parse_ok ("name: h\ntasks:\n  - name: a\n    command: [echo, \"{x}\"]\n"
                             "    params: {x: [1, 2]}\n    timeout: 60\n");
    gr_spec_t *b = parse_ok ("# a comment\nname: h\ntasks:\n- timeout: 1m\n  params:\n"
                             "    x: ['1', \"2\"]\n  command:\n  - echo\n  - '{x}'\n"
                             "  name: a\n");
    gr_spec_t *c = parse_ok ("name: h\ntasks:\n  - name: a\n    command: [echo, \"{x}\"]\n"
                             "    params: {x: [1, 3]}\n    timeout: 60\n");

    ck_assert_uint_eq (a->hash, b->hash);
    ck_assert_uint_ne (a->hash, c->hash);
    gr_spec_destroy (a);
    gr_spec_destroy (b);
    gr_spec_destroy (c);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Hostile values. */

static const char *const hostile[] = {
    "a b",
    "\"quoted\"",
    "it's",
    "$(touch @DIR@/pwned1)",
    "`touch @DIR@/pwned2`",
    "x\ny",
    "--leading-dash",
    "*",
    "",
    "{x}",
    "; touch @DIR@/pwned3",
    "a'b\"c\\d $HOME ; | & > < ( ) ~ #",
    "'",
    "''",
    "\\'",
    "\t tab and trailing newline\n",
    "-n",
    "%s %d %%",
    "{{",
};
#define NHOSTILE (sizeof (hostile) / sizeof (hostile[0]))

/* Replace @DIR@ in s with dir (into a static rotating buffer). */
static const char *with_dir (const char *s, const char *dir)
{
    static char bufs[NHOSTILE + 4][512];
    static size_t k;
    char *out = bufs[k++ % (NHOSTILE + 4)];
    const char *at = strstr (s, "@DIR@");

    if (!at)
        snprintf (out, 512, "%s", s);
    else
        snprintf (out, 512, "%.*s%s%s", (int)(at - s), s, dir, at + 5);
    return out;
}

START_TEST (test_hostile)
{
    char dir[] = "/tmp/gr-spec-hostile-XXXXXX";
    sbuf_t sb;
    char *text, path[300];
    gr_spec_t *s;
    gr_expand_t *x = gr_expand_create ();
    gr_render_ctx_t ctx = {"/tmp/run dir/it's $(x)", 3};
    gr_task_cmd_t cmd;
    gr_error_t e;
    const gr_taskdef_t *ta, *ts, *te;

    ck_assert_ptr_nonnull (mkdtemp (dir));
    sb_open (&sb);
    fprintf (sb.f, "name: hostile\ntasks:\n");
    fprintf (sb.f, "  - name: argv\n    command: [printf, \"%%s\", \"{v}\"]\n");
    fprintf (sb.f, "    params:\n      v:\n");
    for (size_t i = 0; i < NHOSTILE; i++) {
        fprintf (sb.f, "        - ");
        yaml_dq (sb.f, with_dir (hostile[i], dir));
        fputc ('\n', sb.f);
    }
    fprintf (sb.f, "  - name: sh\n    shell: printf '%%s' {v}\n    params:\n      v:\n");
    for (size_t i = 0; i < NHOSTILE; i++) {
        fprintf (sb.f, "        - ");
        yaml_dq (sb.f, with_dir (hostile[i], dir));
        fputc ('\n', sb.f);
    }
    fprintf (sb.f, "  - name: env\n    command: [true]\n    env: {V: \"<{v}>\"}\n"
                   "    cwd: \"{v}\"\n    stdout: \"{v}.out\"\n    params:\n      v:\n");
    for (size_t i = 0; i < NHOSTILE; i++) {
        fprintf (sb.f, "        - ");
        yaml_dq (sb.f, with_dir (hostile[i], dir));
        fputc ('\n', sb.f);
    }
    text = sb_close (&sb);
    s = parse_ok (text);
    free (text);
    ta = gr_spec_find (s, "argv");
    ts = gr_spec_find (s, "sh");
    te = gr_spec_find (s, "env");
    ck_assert_uint_eq (ta->count, NHOSTILE);

    for (size_t i = 0; i < NHOSTILE; i++) {
        const char *want = with_dir (hostile[i], dir);
        char *out;
        size_t len;
        int status;

        /* argv: exactly one element, identical to the value. */
        ck_assert_int_eq (gr_expand_select (x, ta, i), 0);
        ck_assert_int_eq (gr_expand_render (x, &ctx, &cmd, &e), 0);
        ck_assert_str_eq (cmd.argv[0], "printf");
        ck_assert_str_eq (cmd.argv[1], "%s");
        ck_assert_str_eq (cmd.argv[2], want);
        ck_assert_ptr_null (cmd.argv[3]);
        out = run_capture (cmd.argv, &len, &status);
        ck_assert_msg (WIFEXITED (status), "argv %zu", i);
        ck_assert_uint_eq (len, strlen (want));
        ck_assert_mem_eq (out, want, len);
        free (out);

        /* shell: /bin/sh prints the value byte for byte. */
        ck_assert_int_eq (gr_expand_select (x, ts, i), 0);
        ck_assert_int_eq (gr_expand_render (x, &ctx, &cmd, &e), 0);
        ck_assert_str_eq (cmd.argv[0], "/bin/sh");
        ck_assert_str_eq (cmd.argv[1], "-c");
        ck_assert_ptr_null (cmd.argv[3]);
        out = run_capture (cmd.argv, &len, &status);
        ck_assert_msg (WIFEXITED (status) && WEXITSTATUS (status) == 0, "sh %zu: %s", i,
                       cmd.argv[2]);
        ck_assert_msg (len == strlen (want) && memcmp (out, want, len) == 0,
                       "sh %zu: got '%s' want '%s'", i, out, want);
        free (out);

        /* env, cwd and paths: literal. */
        ck_assert_int_eq (gr_expand_select (x, te, i), 0);
        ck_assert_int_eq (gr_expand_render (x, &ctx, &cmd, &e), 0);
        {
            char envwant[600];
            snprintf (envwant, sizeof (envwant), "V=<%s>", want);
            ck_assert_str_eq (cmd.env[0], envwant);
            snprintf (envwant, sizeof (envwant), "%s.out", want);
            ck_assert_str_eq (cmd.out_path, envwant);
        }
        ck_assert_str_eq (cmd.cwd, want);
        ck_assert_ptr_null (cmd.env[1]);
    }
    for (int k = 1; k <= 3; k++) {
        snprintf (path, sizeof (path), "%s/pwned%d", dir, k);
        ck_assert_msg (access (path, F_OK) == -1, "%s was created", path);
    }
    ck_assert_int_eq (rmdir (dir), 0);
    gr_expand_destroy (x);
    gr_spec_destroy (s);
}
END_TEST

/* The fixture on disk: the same guarantees for values written in YAML. */
START_TEST (test_hostile_fixture)
{
    gr_spec_t *s = load_ok ("spec-good-hostile.yaml");
    gr_expand_t *x = gr_expand_create ();
    gr_task_cmd_t cmd;
    gr_error_t e;

    for (size_t t = 0; t < s->ntasks; t++) {
        const gr_taskdef_t *d = &s->tasks[t];
        ck_assert_uint_eq (d->count, 11);
        for (uint64_t i = 0; i < d->count; i++) {
            const char *want = d->params[0].values[i];
            char *out;
            size_t len;
            ck_assert_int_eq (gr_expand_select (x, d, i), 0);
            ck_assert_str_eq (gr_expand_value (x, 0), want);
            ck_assert_int_eq (gr_expand_render (x, NULL, &cmd, &e), 0);
            if (d->argv) {
                ck_assert_str_eq (cmd.argv[2], want);
                ck_assert_ptr_null (cmd.argv[3]);
            }
            out = run_capture (cmd.argv, &len, NULL);
            ck_assert_uint_eq (len, strlen (want));
            ck_assert_mem_eq (out, want, len);
            free (out);
        }
    }
    ck_assert_str_eq (s->tasks[0].params[0].values[5], "x\ny");
    ck_assert_str_eq (s->tasks[0].params[0].values[8], "");
    gr_expand_destroy (x);
    gr_spec_destroy (s);
}
END_TEST

START_TEST (test_builtins_render)
{
    gr_spec_t *s = parse_ok (
        "name: b\ntasks:\n  - name: t\n"
        "    shell: printf '%s|%s|%s|%s' {task} {index} {attempt} {run_dir}\n"
        "    params: {p: [a, b]}\n"
        "  - name: u\n    command: [x, \"{task}/{index}/{attempt}/{run_dir}\", "
        "\"{{p}} }}{{ {{{p}}}\"]\n    params: {p: [a, b]}\n");
    gr_expand_t *x = gr_expand_create ();
    gr_render_ctx_t ctx = {"/tmp/a b'c", 7};
    gr_task_cmd_t cmd;
    gr_error_t e;
    char *out;
    size_t len;

    ck_assert_int_eq (gr_expand_select (x, &s->tasks[0], 1), 0);
    ck_assert_int_eq (gr_expand_render (x, &ctx, &cmd, &e), 0);
    out = run_capture (cmd.argv, &len, NULL);
    ck_assert_str_eq (out, "t|1|7|/tmp/a b'c");
    free (out);
    ck_assert_int_eq (gr_expand_select (x, &s->tasks[1], 1), 0);
    ck_assert_int_eq (gr_expand_render (x, &ctx, &cmd, &e), 0);
    ck_assert_str_eq (cmd.argv[1], "u/1/7//tmp/a b'c");
    ck_assert_str_eq (cmd.argv[2], "{p} }{ {b}");
    /* Without a context: attempt 1 and run_dir ".". */
    ck_assert_int_eq (gr_expand_render (x, NULL, &cmd, &e), 0);
    ck_assert_str_eq (cmd.argv[1], "u/1/1/.");
    gr_expand_destroy (x);
    gr_spec_destroy (s);
}
END_TEST

START_TEST (test_params_string)
{
    gr_spec_t *s = parse_ok ("name: q\ntasks:\n  - name: t\n    command: [x]\n"
                             "    combine: zip\n"
                             "    params:\n      a: [plain, \"two words\", \"\", "
                             "'say \"hi\"', \"back\\\\slash\", \"nl\\nx\"]\n"
                             "      b: {range: [1, 6]}\n");
    gr_expand_t *x = gr_expand_create ();
    static const char *const want[] = {
        "a=plain b=1",         "a=\"two words\" b=2",  "a=\"\" b=3",
        "a=\"say \\\"hi\\\"\" b=4", "a=\"back\\\\slash\" b=5", "a=\"nl\\nx\" b=6",
    };

    for (size_t i = 0; i < 6; i++) {
        ck_assert_int_eq (gr_expand_select (x, &s->tasks[0], i), 0);
        ck_assert_str_eq (gr_expand_params_string (x), want[i]);
    }
    gr_expand_destroy (x);
    gr_spec_destroy (s);
}
END_TEST

START_TEST (test_shell_quote)
{
    static const char *const cases[] = {
        "", "plain", "a b", "'", "''", "it's", "\"", "\\", "$HOME", "$(id)", "`id`",
        "*", "?", "[a]", "~", "a\nb", "\t", "!", "#x", "-n", "--", "%s", "a;b|c&d",
    };
    char all[256];
    size_t n = 0;

    for (int c = 1; c < 256; c++)
        all[n++] = (char)c;
    all[n] = '\0';
    for (size_t i = 0; i <= sizeof (cases) / sizeof (cases[0]); i++) {
        const char *v = i < sizeof (cases) / sizeof (cases[0]) ? cases[i] : all;
        char *q = gr_shell_quote (v), *cmd, *out;
        char *argv[4];
        size_t len;

        ck_assert_ptr_nonnull (q);
        ck_assert_int_eq (q[0], '\'');
        cmd = malloc (strlen (q) + 16);
        sprintf (cmd, "printf '%%s' %s", q);
        argv[0] = "/bin/sh";
        argv[1] = "-c";
        argv[2] = cmd;
        argv[3] = NULL;
        out = run_capture (argv, &len, NULL);
        ck_assert_uint_eq (len, strlen (v));
        ck_assert_mem_eq (out, v, len);
        free (out);
        free (cmd);
        free (q);
    }
    {
        char *q = gr_shell_quote ("it's");
        ck_assert_str_eq (q, "'it'\\''s'");
        free (q);
    }
}
END_TEST

/* ------------------------------------------------------------------ */
/* Templates. */

START_TEST (test_templates)
{
    const char *m;
    gr_spec_t *s;
    gr_expand_t *x = gr_expand_create ();
    gr_task_cmd_t cmd;
    gr_error_t e;

    m = parse_err ("name: t\ntasks:\n  - name: a\n    command: [echo, \"{nope}\"]\n");
    ck_assert_msg (strstr (m, "mem.yaml:4:22: undefined template parameter '{nope}'"), "%s",
                   m);
    m = parse_err ("name: t\ntasks:\n  - name: a\n    shell: echo {x}}\n"
                   "    params: {x: [1]}\n");
    ck_assert_msg (strstr (m, "mem.yaml:4:20: unbalanced '}'"), "%s", m);
    m = parse_err ("name: t\ntasks:\n  - name: a\n    shell: echo }\n");
    ck_assert_msg (strstr (m, "mem.yaml:4:17: unbalanced '}'"), "%s", m);
    m = parse_err ("name: t\ntasks:\n  - name: a\n    command: [echo]\n"
                   "    env: {A: \"x{\"}\n");
    ck_assert_msg (strstr (m, "mem.yaml:5:16: unbalanced '{'"), "%s", m);
    m = parse_err ("name: t\ntasks:\n  - name: a\n    command: [echo]\n"
                   "    stdout: \"out/{ x }\"\n");
    ck_assert_msg (strstr (m, "mem.yaml:5:18: '{ x }'"), "%s", m);
    m = parse_err ("name: t\ntasks:\n  - name: a\n    command: [echo]\n"
                   "    stderr: \"{attempts}\"\n");
    ck_assert_msg (strstr (m, "did you mean '{attempt}'"), "%s", m);
    /* A block scalar reports at its start. */
    m = parse_err ("name: t\ntasks:\n  - name: a\n    shell: |\n      echo {y}\n");
    ck_assert_msg (strstr (m, "mem.yaml:4:12: undefined"), "%s", m);

    s = parse_ok ("name: t\ntasks:\n  - name: a\n    command: [echo, \"{{x}} {x} }}{{\", "
                  "\"{{{{\"]\n    params: {x: [1]}\n");
    ck_assert_int_eq (gr_expand_select (x, &s->tasks[0], 0), 0);
    ck_assert_int_eq (gr_expand_render (x, NULL, &cmd, &e), 0);
    ck_assert_str_eq (cmd.argv[1], "{x} 1 }{");
    ck_assert_str_eq (cmd.argv[2], "{{");
    gr_spec_destroy (s);
    gr_expand_destroy (x);
}
END_TEST

START_TEST (test_render_too_long)
{
    sbuf_t sb;
    char *text;
    gr_spec_t *s;
    gr_expand_t *x = gr_expand_create ();
    gr_task_cmd_t cmd;
    gr_error_t e;

    sb_open (&sb);
    fprintf (sb.f, "name: t\ntasks:\n  - name: a\n    command: [echo, \"{v}{v}\"]\n"
                   "    params:\n      v: [short, \"");
    for (int i = 0; i < 70000; i++)
        fputc ('x', sb.f);
    fprintf (sb.f, "\"]\n");
    text = sb_close (&sb);
    s = parse_ok (text);
    free (text);
    ck_assert_int_eq (gr_expand_select (x, &s->tasks[0], 0), 0);
    ck_assert_int_eq (gr_expand_render (x, NULL, &cmd, &e), 0);
    ck_assert_str_eq (cmd.argv[1], "shortshort");
    ck_assert_int_eq (gr_expand_select (x, &s->tasks[0], 1), 0);
    ck_assert_int_eq (gr_expand_render (x, NULL, &cmd, &e), -1);
    ck_assert_msg (strstr (e.text, "GR_SPEC_MAX_STRING"), "%s", e.text);
    /* The scratch space is still usable. */
    ck_assert_int_eq (gr_expand_select (x, &s->tasks[0], 0), 0);
    ck_assert_int_eq (gr_expand_render (x, NULL, &cmd, &e), 0);
    ck_assert_str_eq (cmd.argv[1], "shortshort");
    gr_expand_destroy (x);
    gr_spec_destroy (s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Resources. */

START_TEST (test_check_resources)
{
    gr_spec_t *s = load_ok ("spec-good-full.yaml");
    gr_error_t e;

    ck_assert_int_eq (gr_spec_check_resources (s, 4, 1, 0, &e), 0);
    ck_assert_int_eq (gr_spec_check_resources (s, 4, 1, 2ull << 30, &e), 0);
    ck_assert_int_eq (gr_spec_check_resources (s, 2, 1, 0, &e), -1);
    ck_assert_int_eq (errno, EINVAL);
    ck_assert_str_eq (e.text, DATA "/spec-good-full.yaml:30:5: task 'train' asks for 4 cpus "
                              "but the largest worker has 2; lower resources.cpus or give "
                              "workers more cpus (--cpus-per-worker)");
    /* prep takes its resources from defaults: the mark is there. */
    ck_assert_int_eq (gr_spec_check_resources (s, 1, 1, 0, &e), -1);
    ck_assert_msg (strstr (e.text, "spec-good-full.yaml:13:3: task 'prep' asks for 2 cpus"),
                   "%s", e.text);
    ck_assert_int_eq (gr_spec_check_resources (s, 8, 0, 0, &e), -1);
    ck_assert_msg (strstr (e.text, ":30:5: task 'train' asks for 1 gpus but the largest "
                                   "worker has 0"),
                   "%s", e.text);
    ck_assert_int_eq (gr_spec_check_resources (s, 8, 1, 1ull << 30, &e), -1);
    ck_assert_msg (strstr (e.text, ":30:5: task 'train' asks for 1610612736 bytes"), "%s",
                   e.text);
    gr_spec_destroy (s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Bad specs: each fails with its position and a phrase. */

static const struct {
    const char *file;
    const char *pos;
    const char *phrase;
} bad[] = {
    {"spec-bad-unknown-key.yaml", "4:5", "unknown key 'comand' in a task; did you mean 'command'?"},
    {"spec-bad-top-key.yaml", "2:1", "did you mean 'tasks'?"},
    {"spec-bad-cpus-type.yaml", "6:13", "resources.cpus: expected a whole number"},
    {"spec-bad-undefined-param.yaml", "4:30", "undefined template parameter '{y}'"},
    {"spec-bad-default-undefined.yaml", "3:14", "undefined template parameter '{x}' in the cwd of task 'b'"},
    {"spec-bad-cycle.yaml", "5:5", "tasks a -> b -> a form a cycle through after:"},
    {"spec-bad-cycle-long.yaml", "7:5", "tasks a -> c -> b -> a form a cycle"},
    {"spec-bad-self-after.yaml", "5:13", "task 'a' lists itself in after:"},
    {"spec-bad-zip-mismatch.yaml", "5:5", "'x' has 3 and 'y' has 2"},
    {"spec-bad-empty-list.yaml", "6:10", "param 'x' has an empty list"},
    {"spec-bad-range-step.yaml", "6:25", "the step must be greater than 0"},
    {"spec-bad-range-down.yaml", "6:33", "'to' must not be less than 'from'"},
    {"spec-bad-missing-name.yaml", "5:5", "task 2 has no name:"},
    {"spec-bad-no-job-name.yaml", "1:1", "the spec has no name:"},
    {"spec-bad-task-name.yaml", "3:11", "task name 'my task' may only hold"},
    {"spec-bad-dup-task.yaml", "5:11", "duplicate task name 'a' (first at line 3)"},
    {"spec-bad-command-string.yaml", "4:14", "use shell: instead"},
    {"spec-bad-command-and-shell.yaml", "5:5", "has both command: and shell:"},
    {"spec-bad-unknown-after.yaml", "7:13", "did you mean 'prepare'?"},
    {"spec-bad-duration.yaml", "5:14", "timeout: expected a duration"},
    {"spec-bad-size.yaml", "5:22", "resources.mem: expected a size"},
    {"spec-bad-syntax.yaml", "5:1", "YAML syntax error"},
    {"spec-bad-tab.yaml", "4:1", "indent with spaces"},
    {"spec-bad-indent.yaml", "5:4", "check the indentation"},
    {"spec-bad-missing-file.yaml", "6:11", "no-such-file.txt"},
    {"spec-bad-reserved-param.yaml", "6:7", "param name 'index' is reserved"},
    {"spec-bad-noop-duration.yaml", "5:5", "duration: only applies to builtin: noop"},
    {"spec-bad-retries-list.yaml", "5:14", "got a list"},
    {"spec-bad-dup-key.yaml", "6:5", "duplicate key 'timeout' (first at line 5)"},
    {"spec-bad-alias.yaml", "5:14", "YAML aliases (*lol) are not supported"},
    {"spec-bad-empty.yaml", "1:1", "the spec is empty"},
    {"spec-bad-top-list.yaml", "1:1", "must be a mapping"},
    {"spec-bad-unbalanced.yaml", "4:22", "unbalanced '{'"},
    {"spec-bad-brace-name.yaml", "4:17", "'{print $1}' in the shell command"},
    {"spec-bad-unquoted-template.yaml", "4:21", "e.g. \"{x}\""},
    {"spec-bad-overflow.yaml", "5:5", "more than 2^64 tasks"},
    {"spec-bad-builtin.yaml", "4:14", "the only one is noop"},
    {"spec-bad-jitter.yaml", "5:31", "retries.jitter: expected a number from 0 to 1"},
    {"spec-bad-success.yaml", "5:18", "expected a whole number from 0 to 255, got '300'"},
    {"spec-bad-env-key.yaml", "6:7", "'1BAD' is not a valid variable name"},
    {"spec-bad-nothing.yaml", "3:5", "has nothing to run"},
    {"spec-bad-combine.yaml", "5:14", "did you mean 'zip'?"},
    {"spec-bad-crash-limit.yaml", "6:20", "retries.crash_limit"},
    {"spec-bad-spread.yaml", "6:13", "spread: 'racks' is not a failure-domain level; did you mean 'rack'?"},
    {"spec-bad-replicas.yaml", "5:15", "replicas: expected a whole number from 1 to 64, got '0'"},
    {"spec-bad-require-empty.yaml", "6:12", "require: label 'gpu' has an empty list of values"},
    {"spec-bad-locality-template.yaml", "6:16", "locality: templates are not allowed here"},
    {"spec-bad-quarantine-default.yaml", "4:3", "quarantine: cannot be a default"},
    {"spec-bad-quarantine-key.yaml", "4:3", "unknown key 'windw' in quarantine; did you mean 'window'?"},
};
#define NBAD ((int)(sizeof (bad) / sizeof (bad[0])))

START_TEST (test_bad_fixture)
{
    char path[4096], where[4200];
    gr_spec_t *s = NULL;
    gr_error_t e = {{0}};

    snprintf (path, sizeof (path), "%s/%s", DATA, bad[_i].file);
    snprintf (where, sizeof (where), "%s:%s: ", path, bad[_i].pos);
    ck_assert_msg (gr_spec_load (path, &s, &e) == -1, "%s loaded", bad[_i].file);
    ck_assert_ptr_null (s);
    ck_assert_msg (strncmp (e.text, where, strlen (where)) == 0, "%s: want '%s', got '%s'",
                   bad[_i].file, where, e.text);
    ck_assert_msg (strstr (e.text, bad[_i].phrase) != NULL, "%s: want '%s' in '%s'",
                   bad[_i].file, bad[_i].phrase, e.text);
    /* Every message says what to do after a semicolon. */
    ck_assert_msg (strchr (e.text + strlen (where), ';') != NULL, "no hint in '%s'", e.text);
}
END_TEST

/* Every fixture on disk is covered: good ones load, bad ones are in the
 * table above, so a new fixture cannot go untested. */
START_TEST (test_all_fixtures)
{
    DIR *d = opendir (DATA);
    struct dirent *de;
    int ngood = 0, nbad = 0;

    ck_assert_ptr_nonnull (d);
    while ((de = readdir (d))) {
        size_t len = strlen (de->d_name);
        if (len < 5 || strcmp (de->d_name + len - 5, ".yaml") != 0)
            continue;
        if (strncmp (de->d_name, "spec-good-", 10) == 0) {
            gr_spec_destroy (load_ok (de->d_name));
            ngood++;
        }
        else if (strncmp (de->d_name, "spec-bad-", 9) == 0) {
            bool found = false;
            for (int i = 0; i < NBAD; i++)
                found = found || strcmp (bad[i].file, de->d_name) == 0;
            ck_assert_msg (found, "%s is not in the table of bad specs", de->d_name);
            nbad++;
        }
    }
    closedir (d);
    ck_assert_int_ge (ngood, 5);
    ck_assert_int_eq (nbad, NBAD);
}
END_TEST

START_TEST (test_missing_spec)
{
    gr_spec_t *s = NULL;
    gr_error_t e;

    ck_assert_int_eq (gr_spec_load (DATA "/no-such-spec.yaml", &s, &e), -1);
    ck_assert_int_eq (errno, ENOENT);
    ck_assert_msg (strstr (e.text, "no-such-spec.yaml"), "%s", e.text);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Limits and hostile inputs. */

START_TEST (test_limits)
{
    sbuf_t sb;
    char *text;
    const char *m;
    gr_spec_t *s = NULL;
    gr_error_t e;

    /* The spec file itself. */
    text = calloc (1, GR_SPEC_MAX_BYTES + 2);
    memset (text, '#', GR_SPEC_MAX_BYTES + 1);
    ck_assert_int_eq (gr_spec_parse (text, GR_SPEC_MAX_BYTES + 1, "big.yaml", NULL, 0, &s,
                                     &e),
                      -1);
    ck_assert_msg (strstr (e.text, "GR_SPEC_MAX_BYTES"), "%s", e.text);
    free (text);

    /* Task definitions. */
    sb_open (&sb);
    fprintf (sb.f, "name: many\ntasks:\n");
    for (int i = 0; i <= GR_SPEC_MAX_TASKDEFS; i++)
        fprintf (sb.f, "  - {name: t%d, builtin: noop}\n", i);
    text = sb_close (&sb);
    m = parse_err (text);
    ck_assert_msg (strstr (m, "mem.yaml:2:1: the spec has 10001 tasks") &&
                   strstr (m, "GR_SPEC_MAX_TASKDEFS"), "%s", m);
    free (text);

    /* Params. */
    sb_open (&sb);
    fprintf (sb.f, "name: p\ntasks:\n  - name: a\n    builtin: noop\n    params:\n");
    for (int i = 0; i <= GR_SPEC_MAX_PARAMS; i++)
        fprintf (sb.f, "      p%d: [1]\n", i);
    text = sb_close (&sb);
    m = parse_err (text);
    ck_assert_msg (strstr (m, "mem.yaml:5:5: ") && strstr (m, "GR_SPEC_MAX_PARAMS"), "%s", m);
    free (text);

    /* argv. */
    sb_open (&sb);
    fprintf (sb.f, "name: p\ntasks:\n  - name: a\n    command: [x");
    for (int i = 0; i < GR_SPEC_MAX_ARGV; i++)
        fprintf (sb.f, ", a");
    fprintf (sb.f, "]\n");
    text = sb_close (&sb);
    m = parse_err (text);
    ck_assert_msg (strstr (m, "mem.yaml:4:5: ") && strstr (m, "GR_SPEC_MAX_ARGV"), "%s", m);
    free (text);

    /* Deep nesting. */
    sb_open (&sb);
    fprintf (sb.f, "name: p\nx: ");
    for (int i = 0; i < 100; i++)
        fputc ('[', sb.f);
    for (int i = 0; i < 100; i++)
        fputc (']', sb.f);
    fputc ('\n', sb.f);
    text = sb_close (&sb);
    m = parse_err (text);
    ck_assert_msg (strstr (m, "deeper than"), "%s", m);
    free (text);

    /* Billion laughs: refused at the first alias, nothing expanded. */
    m = parse_err ("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                   "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                   "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                   "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                   "name: lol\ntasks: [{name: t, command: *d}]\n");
    ck_assert_msg (strstr (m, "mem.yaml:2:8: YAML aliases (*a)"), "%s", m);

    /* Two documents, a NUL in the text, a non-scalar key. */
    m = parse_err ("name: a\ntasks: [{name: t, builtin: noop}]\n---\nname: b\n");
    ck_assert_msg (strstr (m, "mem.yaml:3:1: a second YAML document"), "%s", m);
    {
        static const char nul[] = "name: a\0\ntasks: []\n";
        ck_assert_int_eq (gr_spec_parse (nul, sizeof (nul) - 1, "nul.yaml", NULL, 0, &s, &e),
                          -1);
        ck_assert_msg (strstr (e.text, "nul.yaml:1:8: "), "%s", e.text);
    }
    m = parse_err ("name: a\n[x]: 1\ntasks: []\n");
    ck_assert_msg (strstr (m, "mem.yaml:2:1: a mapping key must be a plain string"), "%s", m);

    /* Counts that overflow in a float range. */
    m = parse_err ("name: a\ntasks:\n  - name: t\n    command: [e, \"{x}\"]\n"
                   "    params: {x: {range: [0, 1e300, 1e-300]}}\n");
    ck_assert_msg (strstr (m, "more than 2^64 values"), "%s", m);
}
END_TEST

/* The limits of gridrun-jobspec(5) LIMITS: each refused with where, the
 * numbers and what to do. */
START_TEST (test_task_limits)
{
    sbuf_t sb;
    char *text, path[] = "/tmp/gr-test-spec-XXXXXX";
    const char *m;
    gr_spec_t *s = NULL;
    gr_error_t e;
    int fd;

    /* A spec file over 16 MiB: its name, its size and the limit. */
    ck_assert_int_ge (fd = mkstemp (path), 0);
    ck_assert_int_eq (ftruncate (fd, 20 * 1024 * 1024), 0);
    close (fd);
    ck_assert_int_eq (gr_spec_load (path, &s, &e), -1);
    ck_assert_int_eq (errno, EFBIG);
    ck_assert_msg (strstr (e.text, path) && strstr (e.text, "is 20971520 bytes, over the limit "
                                                            "of 16777216 bytes")
                       && strstr (e.text, "; put long value lists"),
                   "%s", e.text);
    unlink (path);

    /* Task counts: a product over the limit, one that wraps around 2^64,
     * a zip, one param, replicas, and the sum of the definitions. */
    m = parse_err ("name: a\ntasks:\n  - name: a\n    builtin: noop\n    params:\n"
                   "      x: {range: [1, 100000]}\n      y: {range: [1, 100000]}\n");
    ck_assert_msg (strstr (m, "mem.yaml:5:5: the params of task 'a' expand to 10000000000 tasks "
                              "(x: 100000 x y: 100000 values), over the limit of 4294967295 "
                              "tasks in a run (GR_SPEC_MAX_TASKS); use fewer values"),
                   "%s", m);
    m = parse_err ("name: a\ntasks:\n  - name: a\n    builtin: noop\n    params:\n"
                   "      x: {range: [0, 9223372036854775806]}\n      y: [a, b, c]\n");
    ck_assert_msg (strstr (m, "mem.yaml:5:5: the params of task 'a' expand to more than 2^64 "
                              "tasks (x: 9223372036854775807 x y: 3 values), over the limit of "
                              "4294967295"),
                   "%s", m);
    m = parse_err ("name: a\ntasks:\n  - name: a\n    builtin: noop\n    combine: zip\n"
                   "    params: {x: {range: [1, 5000000000]}, y: {range: [2, 5000000001]}}\n");
    ck_assert_msg (strstr (m, "mem.yaml:6:5: the params of task 'a' expand to 5000000000 tasks "
                              "(combine: zip of 5000000000 values each)"),
                   "%s", m);
    m = parse_err ("name: a\ntasks:\n  - name: a\n    builtin: noop\n"
                   "    params: {x: {range: [1, 4294967296]}}\n");
    ck_assert_msg (strstr (m, "expand to 4294967296 tasks (x: 4294967296 values)"), "%s", m);
    s = parse_ok ("name: a\ntasks:\n  - name: a\n    builtin: noop\n"
                  "    params: {x: {range: [1, 4294967295]}}\n");
    ck_assert_uint_eq (s->total, GR_SPEC_MAX_TASKS);
    gr_spec_destroy (s);
    m = parse_err ("name: a\ntasks:\n  - name: a\n    builtin: noop\n"
                   "    params: {x: {range: [1, 3000000000]}}\n"
                   "  - name: b\n    builtin: noop\n"
                   "    params: {x: {range: [1, 3000000000]}}\n");
    ck_assert_msg (strstr (m, "mem.yaml:6:5: the tasks of the spec add up to more than "
                              "4294967295 (GR_SPEC_MAX_TASKS): 3000000000 before task 'b', "
                              "which has 3000000000; split"),
                   "%s", m);

    /* Values of a file param (in memory, as a worker gets them). */
    {
        size_t n = (size_t)GR_SPEC_MAX_VALUES + 1;
        char *big = malloc (2 * n);
        gr_spec_file_t f = {.path = (char *)"/d/v.txt", .data = big, .len = 2 * n};
        static const char spec[] = "name: a\ntasks:\n  - name: a\n    command: [e, \"{v}\"]\n"
                                   "    params: {v: {file: v.txt}}\n";
        ck_assert_ptr_nonnull (big);
        for (size_t i = 0; i < n; i++)
            memcpy (big + 2 * i, "7\n", 2);
        ck_assert_int_eq (gr_spec_parse (spec, sizeof (spec) - 1, "/d/mem.yaml", &f, 1, &s, &e),
                          -1);
        ck_assert_msg (strstr (e.text, "/d/mem.yaml:5:18: param file '/d/v.txt' of param 'v' "
                                       "holds more than 16777216 values (line 16777217 is "
                                       "value 16777217); a param may have at most 16777216 "
                                       "(GR_SPEC_MAX_VALUES)"),
                       "%s", e.text);
        f.len = 2 * (n - 1);
        ck_assert_int_eq (gr_spec_parse (spec, sizeof (spec) - 1, "/d/mem.yaml", &f, 1, &s, &e),
                          0);
        ck_assert_uint_eq (s->total, GR_SPEC_MAX_VALUES);
        ck_assert_str_eq (s->tasks[0].params[0].values[GR_SPEC_MAX_VALUES - 1], "7");
        gr_spec_destroy (s);
        free (big);
    }

    /* A list param longer than the YAML of a spec may hold. */
    sb_open (&sb);
    fprintf (sb.f, "name: p\ntasks:\n  - name: a\n    builtin: noop\n    params:\n      x: [");
    for (int i = 0; i < 1000000; i++)
        fprintf (sb.f, "%s%d", i ? "," : "", i % 10);
    fprintf (sb.f, "]\n");
    text = sb_close (&sb);
    m = parse_err (text);
    ck_assert_msg (strstr (m, "mem.yaml:6:") && strstr (m, "more than 1000000 YAML values")
                       && strstr (m, "file:"),
                   "%s", m);
    free (text);

    /* Commands exec could never take: one argument, one env variable, all
     * of them together. */
    sb_open (&sb);
    fprintf (sb.f, "name: p\ntasks:\n  - name: a\n    command: [e, \"");
    for (int i = 0; i < 131072; i++)
        fputc ('a', sb.f);
    fprintf (sb.f, "\"]\n");
    text = sb_close (&sb);
    m = parse_err (text);
    ck_assert_msg (strstr (m, "mem.yaml:4:18: the command argument 1 of task 'a' is 131072 bytes "
                              "before any substitution, more than the 131071 bytes")
                       && strstr (m, "MAX_ARG_STRLEN"),
                   "%s", m);
    free (text);
    sb_open (&sb);
    fprintf (sb.f, "name: p\ntasks:\n  - name: a\n    command: [e]\n    env: {K: \"");
    for (int i = 0; i < 131070; i++)
        fputc ('a', sb.f);
    fprintf (sb.f, "{{\"}\n");
    text = sb_close (&sb);
    m = parse_err (text);
    ck_assert_msg (strstr (m, "mem.yaml:5:14: the env variable K of task 'a' is 131073 bytes "),
                   "%s", m);
    free (text);
    sb_open (&sb);
    fprintf (sb.f, "name: p\ntasks:\n  - name: a\n    command: [e");
    for (int k = 0; k < 50; k++) {
        fprintf (sb.f, ", \"{x}");
        for (int i = 0; i < 130000; i++)
            fputc ('a', sb.f);
        fprintf (sb.f, "\"");
    }
    fprintf (sb.f, "]\n    params: {x: [1, 2]}\n");
    text = sb_close (&sb);
    m = parse_err (text);
    ck_assert_msg (strstr (m, "mem.yaml:4:5: the command of task 'a' and its env: take at least "
                              "6500460 bytes before any substitution, more than the 6291456 "
                              "bytes")
                       && strstr (m, "ARG_MAX"),
                   "%s", m);
    free (text);

    /* max_output: a size of at least 1 byte, a default, part of the run's
     * identity only when given. */
    {
        gr_spec_t *a = parse_ok ("name: o\ntasks:\n  - name: a\n    command: [e]\n");
        gr_spec_t *b = parse_ok ("name: o\ndefaults: {max_output: 1M}\ntasks:\n  - name: a\n"
                                 "    command: [e]\n  - name: b\n    command: [e]\n"
                                 "    max_output: 1.5K\n");
        gr_spec_t *c = parse_ok ("name: o\ntasks:\n  - name: a\n    command: [e]\n"
                                 "    max_output: 1M\n");
        ck_assert_uint_eq (a->tasks[0].max_output, 0);
        ck_assert_uint_eq (b->tasks[0].max_output, 1024 * 1024);
        ck_assert_uint_eq (b->tasks[1].max_output, 1536);
        ck_assert_uint_ne (a->hash, c->hash);
        gr_spec_destroy (a);
        gr_spec_destroy (b);
        gr_spec_destroy (c);
        ck_assert_uint_eq (parse_ok_hash ("name: o\ntasks:\n  - name: a\n    command: [e]\n"),
                           parse_ok_hash ("name: o\ntasks:\n  - {name: a, command: [e]}\n"));
    }
    m = parse_err ("name: o\ntasks:\n  - name: a\n    command: [e]\n    max_output: 0\n");
    ck_assert_msg (strstr (m, "mem.yaml:5:17: max_output: expected a size of at least 1 bytes")
                       && strstr (m, "stdout: discard"),
                   "%s", m);
    m = parse_err ("name: o\ntasks:\n  - name: a\n    command: [e]\n    max_output: lots\n");
    ck_assert_msg (strstr (m, "mem.yaml:5:17: max_output: expected a size"), "%s", m);
}
END_TEST

START_TEST (test_more_errors)
{
    const char *m;

    m = parse_err ("name: a\ntasks:\n  - name: t\n    command: [e]\n    timeout: -5\n");
    ck_assert_msg (strstr (m, "mem.yaml:5:14: timeout: expected a duration"), "%s", m);
    m = parse_err ("name: a\ntasks:\n  - name: t\n    command: [e]\n"
                   "    params: {x: {range: [0, 1], file: f}}\n");
    ck_assert_msg (strstr (m, "mem.yaml:5:17: param 'x' must have exactly one"), "%s", m);
    m = parse_err ("name: a\ntasks:\n  - name: t\n    command: [e]\n"
                   "    params: {x: {rnage: [0, 1]}}\n");
    ck_assert_msg (strstr (m, "mem.yaml:5:18: unknown key 'rnage'") &&
                   strstr (m, "did you mean 'range'?"), "%s", m);
    m = parse_err ("name: a\ntasks:\n  - name: t\n    command: [e]\n"
                   "    params: {x: {range: [0, 1, x]}}\n");
    ck_assert_msg (strstr (m, "mem.yaml:5:32: range of param 'x': step must be a number"),
                   "%s", m);
    m = parse_err ("name: a\ntasks:\n  - name: t\n    command: [e]\n"
                   "    params: {9x: [1]}\n");
    ck_assert_msg (strstr (m, "mem.yaml:5:14: param name '9x' is not valid"), "%s", m);
    m = parse_err ("name: a\ntasks:\n  - name: t\n    command: [e]\n    params: {x: 5}\n");
    ck_assert_msg (strstr (m, "mem.yaml:5:17: param 'x' has '5'"), "%s", m);
    m = parse_err ("name: a\ntasks:\n  - name: t\n    command: []\n");
    ck_assert_msg (strstr (m, "mem.yaml:4:14: command: is empty"), "%s", m);
    m = parse_err ("name: a\ndefaults: {name: x}\ntasks:\n  - name: t\n    command: [e]\n");
    ck_assert_msg (strstr (m, "mem.yaml:2:12: name: cannot be a default"), "%s", m);
    m = parse_err ("name: a\ndefaults: {cmd: x}\ntasks:\n  - name: t\n    command: [e]\n");
    ck_assert_msg (strstr (m, "mem.yaml:2:12: unknown key 'cmd' in defaults"), "%s", m);
    m = parse_err ("name: a\ntasks: []\n");
    ck_assert_msg (strstr (m, "mem.yaml:2:8: tasks: is empty"), "%s", m);
    m = parse_err ("name: a b\ntasks: [{name: t, builtin: noop}]\n");
    ck_assert_msg (strstr (m, "mem.yaml:1:7: job name 'a b'"), "%s", m);
    m = parse_err ("name: a\ngrace: forever\ntasks: [{name: t, builtin: noop}]\n");
    ck_assert_msg (strstr (m, "mem.yaml:2:8: grace: expected a duration"), "%s", m);
    m = parse_err ("name: a\ntasks:\n  - name: t\n    command: [e]\n    stdout:\n");
    ck_assert_msg (strstr (m, "mem.yaml:5:12: stdout: has no value"), "%s", m);
    m = parse_err ("name: a\ntasks:\n  - name: t\n    command: [e]\n    cwd: {x}\n");
    ck_assert_msg (strstr (m, "mem.yaml:5:10: cwd: expected a string, got a mapping"), "%s",
                   m);
    m = parse_err ("name: a\ntasks:\n  - name: t\n    command: [e]\n"
                   "    after: [u, u]\n  - name: u\n    command: [e]\n");
    ck_assert_msg (strstr (m, "mem.yaml:5:16: task 't' lists 'u' twice"), "%s", m);
    m = parse_err ("name: a\ntasks:\n  - name: t\n    command: [e]\n    success: []\n");
    ck_assert_msg (strstr (m, "mem.yaml:5:14: success: is empty"), "%s", m);
    m = parse_err ("name: a\ntasks:\n  - name: t\n    command: [e]\n"
                   "    resources: {cpus: 0}\n");
    ck_assert_msg (strstr (m, "mem.yaml:5:23: resources.cpus"), "%s", m);
    m = parse_err ("name: a\ntasks:\n  - name: t\n    command: [e]\n"
                   "    resources: {cpu: 2}\n");
    ck_assert_msg (strstr (m, "did you mean 'cpus'?"), "%s", m);
    m = parse_err ("name: a\ntasks:\n  - name: t\n    command: [e]\n"
                   "    retries: {max: 1, backof: 2s}\n");
    ck_assert_msg (strstr (m, "mem.yaml:5:23: unknown key 'backof' in retries; did you mean "
                              "'backoff'?"),
                   "%s", m);
}
END_TEST

/* after: lists that name tasks hundreds of thousands of times in all are
 * resolved by binary search, not a scan of the tasks for each name (which
 * took half a minute for this spec). */
START_TEST (test_many_afters)
{
    enum { NTASKS = 5000, NAFTER = 190 };
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream (&text, &len);
    ck_assert_ptr_nonnull (f);
    fprintf (f, "name: afters\ntasks:\n");
    for (int i = 0; i < NTASKS; i++) {
        fprintf (f, "  - name: t%d\n    builtin: noop\n", i);
        if (i < NTASKS - NAFTER) {
            fprintf (f, "    after: [");
            for (int j = NTASKS - NAFTER; j < NTASKS; j++)
                fprintf (f, "t%d%s", j, j + 1 < NTASKS ? ", " : "]\n");
        }
    }
    ck_assert_int_eq (fclose (f), 0);

    gr_spec_t *s = NULL;
    gr_error_t e;
    struct timespec t0, t1;
    clock_gettime (CLOCK_MONOTONIC, &t0);
    ck_assert_msg (gr_spec_parse (text, len, "afters.yaml", NULL, 0, &s, &e) == 0, "%s",
                   e.text);
    clock_gettime (CLOCK_MONOTONIC, &t1);
    double t = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf ("# %d tasks, %d after: names: parsed in %.2f s\n", NTASKS,
            (NTASKS - NAFTER) * NAFTER, t);
    ck_assert_uint_eq (s->tasks[0].nafter, NAFTER);
    ck_assert_uint_eq (s->tasks[0].after[NAFTER - 1], NTASKS - 1);
    ck_assert_msg (t < 20 * gr_test_time_scale (), "%.1f s", t);
    gr_spec_destroy (s);
    free (text);
}
END_TEST

START_TEST (test_cycles_memory)
{
    const char *m;
    gr_spec_t *s;

    /* A longer cycle hanging off a chain, listed from where it closes. */
    m = parse_err ("name: c\ntasks:\n"
                   "  - {name: w, builtin: noop, after: x}\n"
                   "  - {name: x, builtin: noop, after: y}\n"
                   "  - {name: y, builtin: noop, after: z}\n"
                   "  - {name: z, builtin: noop, after: [v]}\n"
                   "  - {name: v, builtin: noop, after: [x]}\n");
    ck_assert_msg (strstr (m, "mem.yaml:4:30: tasks x -> y -> z -> v -> x form a cycle"),
                   "%s", m);
    /* A diamond is not a cycle. */
    s = parse_ok ("name: d\ntasks:\n"
                  "  - {name: a, builtin: noop}\n"
                  "  - {name: b, builtin: noop, after: a}\n"
                  "  - {name: c, builtin: noop, after: a}\n"
                  "  - {name: d, builtin: noop, after: [b, c]}\n");
    ck_assert_uint_eq (s->tasks[3].nafter, 2);
    ck_assert_uint_eq (s->tasks[3].after[0], 1);
    ck_assert_uint_eq (s->tasks[3].after[1], 2);
    gr_spec_destroy (s);
}
END_TEST

START_TEST (test_examples)
{
    /* The example specs users copy must always load. */
    static const char *const jobs[] = {"demo.yaml", "sweep.yaml", "dag.yaml"};
    for (size_t i = 0; i < sizeof (jobs) / sizeof (jobs[0]); i++) {
        char path[4096];
        gr_spec_t *s = NULL;
        gr_error_t e;
        snprintf (path, sizeof (path), "%s/../../jobs/%s", DATA, jobs[i]);
        ck_assert_msg (gr_spec_load (path, &s, &e) == 0, "%s", e.text);
        ck_assert_uint_gt (s->total, 0);
        gr_spec_destroy (s);
    }
}
END_TEST

/* ------------------------------------------------------------------ */
/* Placement: replicas, spread, retry_away, require, prefer, locality,
 * quarantine. */

static const gr_label_match_t *label (const gr_label_match_t *m, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp (m[i].key, key) == 0)
            return &m[i];
    }
    ck_abort_msg ("no label %s", key);
    return NULL;
}

START_TEST (test_placement_fixture)
{
    gr_spec_t *s = load_ok ("spec-good-placement.yaml");
    const gr_taskdef_t *sim = gr_spec_find (s, "sim");
    const gr_taskdef_t *check = gr_spec_find (s, "check");
    const gr_taskdef_t *collect = gr_spec_find (s, "collect");
    const gr_label_match_t *m;

    ck_assert_uint_eq (s->total, 12 + 2 + 1);
    ck_assert (s->quarantine.enabled);
    ck_assert_uint_eq (s->quarantine.failures, 3);
    ck_assert (s->quarantine.window == 300);
    ck_assert (s->quarantine.cooloff == 600);
    ck_assert_int_eq (s->quarantine.level, GR_LEVEL_RACK);

    /* sim: its own keys; require: replaces the default's as a whole. */
    ck_assert_uint_eq (sim->replicas, 3);
    ck_assert_uint_eq (sim->count, 12);
    ck_assert_int_eq (sim->spread, GR_LEVEL_RACK);
    ck_assert_int_eq (sim->retry_away, GR_LEVEL_NODE);
    ck_assert_uint_eq (sim->nrequire, 3);
    ck_assert_str_eq (sim->require[0].key, "gpu");
    ck_assert_uint_eq (sim->require[0].nvalues, 1);
    ck_assert_str_eq (sim->require[0].values[0], "a100");
    ck_assert_int_eq (sim->require[0].mark.line, 15);
    ck_assert_int_eq (sim->require[0].mark.col, 7);
    m = label (sim->require, sim->nrequire, "zone");
    ck_assert_uint_eq (m->nvalues, 2);
    ck_assert_str_eq (m->values[0], "east");
    ck_assert_str_eq (m->values[1], "west");
    /* A number is kept as written. */
    m = label (sim->require, sim->nrequire, "mem_gb");
    ck_assert_str_eq (m->values[0], "512");
    ck_assert_uint_eq (sim->nprefer, 1);
    ck_assert_str_eq (sim->prefer[0].key, "cost");
    ck_assert_str_eq (sim->prefer[0].values[0], "low");
    ck_assert_str_eq (sim->locality, "era5");
    /* place_mark: the replicas: key. */
    ck_assert_int_eq (sim->place_mark.line, 12);
    ck_assert_int_eq (sim->place_mark.col, 5);

    /* check: spread defaults to node with replicas; require is the
     * default's, and so is place_mark's fallback: replicas: first. */
    ck_assert_uint_eq (check->replicas, 2);
    ck_assert_uint_eq (check->count, 2);
    ck_assert_int_eq (check->spread, GR_LEVEL_NODE);
    ck_assert_int_eq (check->retry_away, GR_LEVEL_NODE);
    ck_assert_uint_eq (check->nrequire, 1);
    ck_assert_uint_eq (check->require[0].nvalues, 2);
    ck_assert_str_eq (check->require[0].values[1], "h100");
    ck_assert_uint_eq (check->nprefer, 0);
    ck_assert_ptr_null (check->locality);
    ck_assert_int_eq (check->place_mark.line, 22);

    /* collect: one replica with a spread is allowed; place_mark is the
     * default's require: key. */
    ck_assert_uint_eq (collect->replicas, 1);
    ck_assert_uint_eq (collect->count, 1);
    ck_assert_int_eq (collect->spread, GR_LEVEL_ZONE);
    ck_assert_int_eq (collect->place_mark.line, 7);
    ck_assert_int_eq (collect->place_mark.col, 3);
    gr_spec_destroy (s);
}
END_TEST

START_TEST (test_placement_defaults)
{
    gr_spec_t *s = load_ok ("spec-good-minimal.yaml");
    const gr_taskdef_t *t = &s->tasks[0];

    ck_assert_uint_eq (t->replicas, 1);
    ck_assert_int_eq (t->spread, GR_LEVEL_NONE);
    ck_assert_int_eq (t->retry_away, GR_LEVEL_NONE);
    ck_assert_ptr_null (t->require);
    ck_assert_uint_eq (t->nrequire, 0);
    ck_assert_ptr_null (t->prefer);
    ck_assert_uint_eq (t->nprefer, 0);
    ck_assert_ptr_null (t->locality);
    ck_assert_int_eq (t->place_mark.line, t->mark.line);
    ck_assert_int_eq (t->place_mark.col, t->mark.col);
    ck_assert (!s->quarantine.enabled);
    ck_assert_uint_eq (s->quarantine.failures, 5);
    ck_assert (s->quarantine.window == 600);
    ck_assert (s->quarantine.cooloff == 600);
    ck_assert_int_eq (s->quarantine.level, GR_LEVEL_NODE);
    gr_spec_destroy (s);

    /* Defaults are inherited key by key; an empty require: {} of a task
     * drops the default's. */
    s = parse_ok ("name: d\ndefaults:\n  replicas: 4\n  spread: zone\n  locality: ds1\n"
                  "  require: {gpu: a100}\n  prefer: {cost: [low, mid]}\ntasks:\n"
                  "  - name: a\n    command: [x]\n"
                  "  - name: b\n    command: [x]\n    replicas: 1\n    require: {}\n"
                  "    locality: ds2\n");
    ck_assert_uint_eq (s->tasks[0].replicas, 4);
    ck_assert_uint_eq (s->tasks[0].count, 4);
    ck_assert_int_eq (s->tasks[0].spread, GR_LEVEL_ZONE);
    ck_assert_str_eq (s->tasks[0].locality, "ds1");
    ck_assert_uint_eq (s->tasks[0].nrequire, 1);
    ck_assert_uint_eq (s->tasks[0].nprefer, 1);
    ck_assert_uint_eq (s->tasks[0].prefer[0].nvalues, 2);
    ck_assert_int_eq (s->tasks[0].place_mark.line, 3);
    ck_assert_uint_eq (s->tasks[1].replicas, 1);
    ck_assert_uint_eq (s->tasks[1].count, 1);
    ck_assert_int_eq (s->tasks[1].spread, GR_LEVEL_ZONE);
    ck_assert_uint_eq (s->tasks[1].nrequire, 0);
    ck_assert_str_eq (s->tasks[1].locality, "ds2");
    ck_assert_uint_eq (s->total, 5);
    gr_spec_destroy (s);

    ck_assert_str_eq (gr_level_name (GR_LEVEL_ZONE), "zone");
    ck_assert_str_eq (gr_level_name (GR_LEVEL_RACK), "rack");
    ck_assert_str_eq (gr_level_name (GR_LEVEL_NODE), "node");
    ck_assert_str_eq (gr_level_name (GR_LEVEL_NONE), "none");
    ck_assert_str_eq (gr_level_name ((gr_level_t)7), "none");
}
END_TEST

START_TEST (test_quarantine)
{
    static const char *const head = "name: q\ntasks:\n  - name: a\n    command: [x]\n";
    static const struct {
        const char *q;
        bool enabled;
        uint32_t failures;
        double window, cooloff;
        gr_level_t level;
    } cases[] = {
        {"", false, 5, 600, 600, GR_LEVEL_NODE},
        {"quarantine: false\n", false, 5, 600, 600, GR_LEVEL_NODE},
        {"quarantine: true\n", true, 5, 600, 600, GR_LEVEL_NODE},
        {"quarantine: {}\n", true, 5, 600, 600, GR_LEVEL_NODE},
        {"quarantine: {failures: 1, window: 90, cooloff: 1h, level: zone}\n", true, 1, 90,
         3600, GR_LEVEL_ZONE},
        {"quarantine:\n  cooloff: 30s\n", true, 5, 600, 30, GR_LEVEL_NODE},
    };
    uint64_t off_hash = 0, on_hash = 0;

    for (size_t i = 0; i < sizeof (cases) / sizeof (cases[0]); i++) {
        char text[512];
        gr_spec_t *s;
        snprintf (text, sizeof (text), "%s%s", cases[i].q, head);
        s = parse_ok (text);
        ck_assert_msg (s->quarantine.enabled == cases[i].enabled, "%s", cases[i].q);
        ck_assert_uint_eq (s->quarantine.failures, cases[i].failures);
        ck_assert (s->quarantine.window == cases[i].window);
        ck_assert (s->quarantine.cooloff == cases[i].cooloff);
        ck_assert_int_eq (s->quarantine.level, cases[i].level);
        /* Off is off however it is written; on changes the identity. */
        if (i == 0)
            off_hash = s->hash;
        else if (!cases[i].enabled)
            ck_assert_uint_eq (s->hash, off_hash);
        else {
            ck_assert_uint_ne (s->hash, off_hash);
            if (i == 2)
                on_hash = s->hash;
            if (i == 3)
                ck_assert_uint_eq (s->hash, on_hash);
            if (i > 3)
                ck_assert_uint_ne (s->hash, on_hash);
        }
        gr_spec_destroy (s);
    }
}
END_TEST

/* kind: group: its keys, defaults and errors, and how it renders. */
START_TEST (test_group)
{
    gr_spec_t *s = parse_ok ("name: g\ntasks:\n  - name: train\n    kind: group\n"
                             "    ranks: 4\n    ranks_per_node: 2\n    cpus_per_rank: 3\n"
                             "    gpus_per_rank: 1\n    max_restarts: 5\n    grace: 90s\n"
                             "    params: {lr: [0.1, 0.01]}\n"
                             "    checkpoint_dir: \"ck/{lr}\"\n"
                             "    command: [python3, train.py, --lr, \"{lr}\"]\n"
                             "  - name: plain\n    kind: task\n    command: [x]\n");
    const gr_taskdef_t *t = &s->tasks[0];
    ck_assert (t->group);
    ck_assert_uint_eq (t->ranks, 4);
    ck_assert_uint_eq (t->ranks_per_node, 2);
    ck_assert_uint_eq (t->cpus, 3);
    ck_assert_uint_eq (t->gpus, 1);
    ck_assert_uint_eq (t->retry.max, 5);
    ck_assert (t->retry.backoff == 0 && t->retry.jitter == 0);
    ck_assert_uint_eq (t->retry.crash_limit, UINT32_MAX);
    ck_assert (t->group_grace == 90);
    ck_assert_uint_eq (t->count, 2);
    ck_assert (!s->tasks[1].group);
    ck_assert (s->tasks[1].group_grace < 0);

    gr_expand_t *x = gr_expand_create ();
    gr_task_cmd_t cmd;
    gr_error_t e;
    gr_render_ctx_t ctx = {.run_dir = "/r", .attempt = 1};
    ck_assert_int_eq (gr_expand_select (x, t, 1), 0);
    ck_assert_int_eq (gr_expand_render (x, &ctx, &cmd, &e), 0);
    ck_assert_str_eq (cmd.ckpt_dir, "ck/0.01");
    ck_assert_str_eq (cmd.argv[3], "0.01");
    ck_assert_int_eq (gr_expand_select (x, &s->tasks[1], 0), 0);
    ck_assert_int_eq (gr_expand_render (x, &ctx, &cmd, &e), 0);
    ck_assert_ptr_null (cmd.ckpt_dir);
    gr_expand_destroy (x);

    /* Defaults: ranks_per_node none, one cpu, no restarts, the job's grace. */
    gr_spec_t *d = parse_ok ("name: g\ntasks:\n  - name: a\n    kind: group\n    ranks: 2\n"
                             "    command: [x]\n");
    ck_assert_uint_eq (d->tasks[0].ranks_per_node, 0);
    ck_assert_uint_eq (d->tasks[0].cpus, 1);
    ck_assert_uint_eq (d->tasks[0].gpus, 0);
    ck_assert_uint_eq (d->tasks[0].retry.max, 0);
    ck_assert (d->tasks[0].group_grace < 0);
    ck_assert_ptr_null (d->tasks[0].ckpt_dir);
    /* The group keys are part of the run's identity. */
    gr_spec_t *d2 = parse_ok ("name: g\ntasks:\n  - name: a\n    kind: group\n    ranks: 3\n"
                              "    command: [x]\n");
    gr_spec_t *d3 = parse_ok ("name: g\ntasks:\n  - name: a\n    command: [x]\n");
    ck_assert_uint_ne (d->hash, d2->hash);
    ck_assert_uint_ne (d->hash, d3->hash);
    gr_spec_destroy (d);
    gr_spec_destroy (d2);
    gr_spec_destroy (d3);
    gr_spec_destroy (s);
}
END_TEST

START_TEST (test_group_errors)
{
    static const char *const head = "name: e\ntasks:\n  - name: a\n    command: [x]\n";
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"    kind: gang\n", "mem.yaml:5:11: kind: expected task or group, got 'gang'"},
        {"    kind: [group]\n", "mem.yaml:5:11: kind: expected task or group, got a list"},
        {"    ranks: 2\n", "mem.yaml:5:5: ranks: is a key of group tasks; add kind: group to "
                           "task 'a'"},
        {"    kind: task\n    max_restarts: 2\n", "mem.yaml:6:5: max_restarts: is a key of "
                                                  "group tasks"},
        {"    kind: group\n", "mem.yaml:5:5: group task 'a' has no ranks:; give the number of "
                              "processes"},
        {"    kind: group\n    ranks: 0\n", "mem.yaml:6:12: ranks: expected a whole number "
                                              "from 1 to 65536, got '0'"},
        {"    kind: group\n    ranks: 2\n    ranks_per_node: 3\n",
         "mem.yaml:7:21: ranks_per_node: expected a whole number from 1 to 2, got '3'"},
        {"    kind: group\n    ranks: 2\n    cpus_per_rank: 0\n",
         "mem.yaml:7:20: cpus_per_rank: expected a whole number from 1"},
        {"    kind: group\n    ranks: 2\n    resources: {cpus: 2}\n",
         "mem.yaml:7:5: resources: does not apply to a group task ('a'); give cpus_per_rank: "
         "and gpus_per_rank: instead"},
        {"    kind: group\n    ranks: 2\n    retries: 2\n",
         "mem.yaml:7:5: retries: does not apply to a group task ('a'); a group restarts as a "
         "whole: give max_restarts: instead"},
        {"    kind: group\n    ranks: 2\n    replicas: 2\n", "replicas: does not apply to a "
                                                             "group task"},
        {"    kind: group\n    ranks: 2\n    grace: soon\n",
         "mem.yaml:7:12: grace: expected a duration"},
        {"    kind: group\n    ranks: 2\n    checkpoint_dir: \"\"\n",
         "mem.yaml:7:21: checkpoint_dir: is empty"},
        {"    kind: group\n    ranks: 2\n    checkpoint_dir: \"c/{nope}\"\n",
         "mem.yaml:7:24: undefined template parameter '{nope}' in the checkpoint_dir of "
         "task 'a'"},
        {"name: e\ntasks:\n  - name: a\n    builtin: noop\n    kind: group\n    ranks: 2\n",
         "mem.yaml:4:5: builtin: does not apply to a group task ('a')"},
        {"name: e\ndefaults:\n  builtin: noop\ntasks:\n  - name: a\n    kind: group\n"
         "    ranks: 2\n",
         "mem.yaml:6:5: task 'a' is a group but its default action is builtin:"},
        {"name: e\ndefaults:\n  ranks: 2\ntasks:\n  - name: a\n    command: [x]\n",
         "mem.yaml:3:3: unknown key 'ranks' in defaults"},
    };
    char text[1024];
    for (size_t i = 0; i < sizeof (cases) / sizeof (cases[0]); i++) {
        if (strncmp (cases[i].text, "name:", 5) == 0)
            snprintf (text, sizeof (text), "%s", cases[i].text);
        else
            snprintf (text, sizeof (text), "%s%s", head, cases[i].text);
        const char *msg = parse_err (text);
        ck_assert_msg (strstr (msg, cases[i].want), "case %zu: got \"%s\", want \"%s\"", i,
                       msg, cases[i].want);
    }
}
END_TEST

START_TEST (test_placement_errors)
{
    static const char *const head = "name: e\ntasks:\n  - name: a\n    command: [x]\n";
    static const struct {
        const char *text;  /* after head, or a whole spec when it starts "name:" */
        const char *want;
    } cases[] = {
        {"    replicas: 0\n", "mem.yaml:5:15: replicas: expected a whole number from 1 to 64, "
                              "got '0'"},
        {"    replicas: 65\n", "mem.yaml:5:15: replicas: expected a whole number from 1 to 64, "
                               "got '65'; give how many copies"},
        {"    replicas: x\n", "mem.yaml:5:15: replicas: expected a whole number"},
        {"    replicas: -1\n", "mem.yaml:5:15: replicas: expected a whole number"},
        {"    replicas: [2]\n", "mem.yaml:5:15: replicas: expected a whole number from 1 to 64, "
                                "got a list"},
        {"    replicas: 2.5\n", "mem.yaml:5:15: replicas: expected a whole number"},
        {"    spread: rakc\n", "mem.yaml:5:13: spread: 'rakc' is not a failure-domain level; "
                               "did you mean 'rack'?"},
        {"    spread: nodes\n", "did you mean 'node'?"},
        {"    spread: datacenter\n", "mem.yaml:5:13: spread: 'datacenter' is not a "
                                     "failure-domain level; use node, rack, zone or none"},
        {"    spread: [rack]\n", "mem.yaml:5:13: spread: expected a string, got a list"},
        {"    spread:\n", "spread: has no value"},
        {"    retry_away: zonee\n", "mem.yaml:5:17: retry_away: 'zonee' is not a failure-domain "
                                    "level; did you mean 'zone'?"},
        {"    require: [gpu]\n", "mem.yaml:5:14: require: expected a mapping of label: value or "
                                 "[values], got a list"},
        {"    require: a100\n", "mem.yaml:5:14: require: expected a mapping"},
        {"    require: {gpu: []}\n", "mem.yaml:5:20: require: label 'gpu' has an empty list of "
                                     "values"},
        {"    prefer: {cost: []}\n", "mem.yaml:5:20: prefer: label 'cost' has an empty list"},
        {"    require: {gpu: {a: b}}\n", "mem.yaml:5:20: require: label 'gpu' has a mapping"},
        {"    require: {gpu: [a, [b]]}\n", "mem.yaml:5:24: require: a value of label 'gpu' is a "
                                           "list"},
        {"    require: {gpu: }\n", "mem.yaml:5:20: require.gpu: has no value"},
        {"    require: {gpu: \"\"}\n", "mem.yaml:5:20: require.gpu: the label value is empty"},
        {"    require: {\"g/pu\": a}\n", "mem.yaml:5:15: require: label name 'g/pu' may only "
                                         "hold letters, digits"},
        {"    require: {gpu: \"a b\"}\n", "mem.yaml:5:20: require.gpu: label value 'a b' may "
                                            "not hold spaces, commas"},
        {"    prefer: {gpu: \"a,b\"}\n", "list several values as [a, b]"},
        {"    require: {gpu: \"{g}\"}\n", "mem.yaml:5:21: require.gpu: templates are not "
                                            "allowed here"},
        {"    prefer: {\"{k}\": a}\n", "mem.yaml:5:15: prefer: templates are not allowed here"},
        {"    locality: \"era5-{x}\"\n", "mem.yaml:5:21: locality: templates are not allowed "
                                           "here, but data set name 'era5-{x}' holds a '{'"},
        {"    locality: [a, b]\n", "mem.yaml:5:15: locality: expected one data set name, got "
                                   "a list"},
        {"    locality: {a: b}\n", "mem.yaml:5:15: locality: expected a string, got a mapping"},
        {"    locality: \"a,b\"\n", "mem.yaml:5:15: locality: data set name 'a,b' may not hold"},
        {"    quarantine: true\n", "mem.yaml:5:5: quarantine: is a job key, not a task key"},
        {"name: e\ndefaults:\n  quarantine: true\ntasks:\n  - name: a\n    command: [x]\n",
         "mem.yaml:3:3: quarantine: cannot be a default"},
        {"name: e\nquarantine: yes-please\ntasks:\n  - name: a\n    command: [x]\n",
         "mem.yaml:2:13: quarantine: expected true, false or a mapping"},
        {"name: e\nquarantine: [node]\ntasks:\n  - name: a\n    command: [x]\n",
         "mem.yaml:2:13: quarantine: expected true, false or a mapping"},
        {"name: e\nquarantine:\ntasks:\n  - name: a\n    command: [x]\n",
         "mem.yaml:2:12: quarantine: expected true, false or a mapping"},
        {"name: e\nquarantine: {failure: 3}\ntasks:\n  - name: a\n    command: [x]\n",
         "mem.yaml:2:14: unknown key 'failure' in quarantine; did you mean 'failures'?"},
        {"name: e\nquarantine: {failures: 0}\ntasks:\n  - name: a\n    command: [x]\n",
         "mem.yaml:2:24: quarantine.failures: expected a whole number from 1"},
        {"name: e\nquarantine: {window: soon}\ntasks:\n  - name: a\n    command: [x]\n",
         "mem.yaml:2:22: quarantine.window: expected a duration"},
        {"name: e\nquarantine: {window: 0}\ntasks:\n  - name: a\n    command: [x]\n",
         "mem.yaml:2:22: quarantine.window: must be longer than 0"},
        {"name: e\nquarantine: {cooloff: 0s}\ntasks:\n  - name: a\n    command: [x]\n",
         "mem.yaml:2:23: quarantine.cooloff: must be longer than 0"},
        {"name: e\nquarantine: {level: host}\ntasks:\n  - name: a\n    command: [x]\n",
         "mem.yaml:2:21: quarantine.level: 'host' is not a failure-domain level"},
        {"name: e\ntasks:\n  - name: a\n    command: [x]\n"
         "    params: {x: {range: [1, 100000000]}}\n    replicas: 64\n",
         "mem.yaml:6:5: task 'a' with 64 replicas expands to 6400000000 tasks (100000000 "
         "combinations x 64 replicas), over the limit of 4294967295 tasks in a run "
         "(GR_SPEC_MAX_TASKS)"},
        {"name: e\ntasks:\n  - name: a\n    command: [x, \"{replicas}\"]\n    replicas: 2\n",
         "did you mean '{replica}'?"},
        {"name: e\ntasks:\n  - name: a\n    command: [x]\n    params: {replica: [1]}\n",
         "mem.yaml:5:14: param name 'replica' is reserved for the built-in {replica}"},
    };

    for (size_t i = 0; i < sizeof (cases) / sizeof (cases[0]); i++) {
        char text[512];
        const char *m;
        if (strncmp (cases[i].text, "name:", 5) == 0)
            snprintf (text, sizeof (text), "%s", cases[i].text);
        else
            snprintf (text, sizeof (text), "%s%s", head, cases[i].text);
        m = parse_err (text);
        ck_assert_msg (strstr (m, cases[i].want) != NULL, "case %zu: want '%s' in '%s'", i,
                       cases[i].want, m);
    }
}
END_TEST

START_TEST (test_replica_expand)
{
    gr_spec_t *s = parse_ok ("name: r\ntasks:\n  - name: grid\n"
                             "    command: [x, \"{a}\", \"{b}\", \"{index}\", \"{replica}\"]\n"
                             "    env: {R: \"{replica}/{attempt}\"}\n"
                             "    params: {a: [x, y], b: [0.25, 0.5]}\n    replicas: 3\n"
                             "  - name: hello\n    shell: echo {replica} {index}\n"
                             "    replicas: 3\n");
    gr_spec_t *plain = parse_ok ("name: r\ntasks:\n  - name: grid\n"
                                 "    command: [x, \"{a}\", \"{b}\"]\n"
                                 "    params: {a: [x, y], b: [0.25, 0.5]}\n"
                                 "  - name: hello\n    command: [echo, hello]\n");
    const gr_taskdef_t *g = &s->tasks[0], *h = &s->tasks[1];
    gr_expand_t *x = gr_expand_create (), *y = gr_expand_create ();
    gr_render_ctx_t ctx = {"/run", 2};
    gr_task_cmd_t cmd;
    gr_error_t e;
    uint64_t k;

    ck_assert_uint_eq (g->count, 12);
    ck_assert_uint_eq (h->count, 3);
    ck_assert_uint_eq (s->total, 15);

    /* Task 7 is combination 7 / 3 = 2 (a=y, b=0.25), replica 1. */
    ck_assert_int_eq (gr_expand_select (x, g, 7), 0);
    ck_assert_uint_eq (gr_expand_replica (x), 1);
    ck_assert_str_eq (gr_expand_value (x, 0), "y");
    ck_assert_str_eq (gr_expand_value (x, 1), "0.25");
    ck_assert_str_eq (gr_expand_name (x), "grid[2]#1");
    ck_assert_str_eq (gr_expand_params_string (x), "a=y b=0.25");
    ck_assert_int_eq (gr_expand_render (x, &ctx, &cmd, &e), 0);
    ck_assert_str_eq (cmd.argv[3], "7");
    ck_assert_str_eq (cmd.argv[4], "1");
    ck_assert_str_eq (cmd.env[0], "R=1/2");
    ck_assert_int_eq (gr_expand_select (x, g, 11), 0);
    ck_assert_str_eq (gr_expand_name (x), "grid[3]#2");
    ck_assert_int_eq (gr_expand_select (x, g, 12), -1);

    /* One combination: "name#r". */
    ck_assert_int_eq (gr_expand_select (x, h, 2), 0);
    ck_assert_str_eq (gr_expand_name (x), "hello#2");
    ck_assert_int_eq (gr_expand_render (x, &ctx, &cmd, &e), 0);
    ck_assert_str_eq (cmd.argv[2], "echo '2' '2'");

    /* Replica 0 has the key of the task without replicas; the others add
     * "\0#replica=r".  These are stored in journals: pinned. */
    for (uint64_t i = 0; i < g->count; i++) {
        ck_assert_int_eq (gr_expand_select (x, g, i), 0);
        ck_assert_int_eq (gr_expand_select (y, &plain->tasks[0], i / 3), 0);
        if (i % 3 == 0)
            ck_assert_uint_eq (gr_expand_key (x), gr_expand_key (y));
        else
            ck_assert_uint_ne (gr_expand_key (x), gr_expand_key (y));
    }
    ck_assert_int_eq (gr_expand_select (x, h, 0), 0);
    ck_assert_uint_eq (gr_expand_key (x), 0x16fe05a1c75bcd0fULL);
    ck_assert_int_eq (gr_expand_select (x, h, 2), 0);
    ck_assert_uint_eq (gr_expand_key (x), 0x0e9a3c37ebc1af94ULL);
    ck_assert_uint_eq (gr_expand_key (x), gr_hash64 ("hello\0#replica=2", 16));
    ck_assert_int_eq (gr_expand_select (x, g, 1), 0);
    ck_assert_uint_eq (gr_expand_key (x), 0x0941254397bd531fULL);
    k = gr_hash64_update (GR_HASH64_INIT, "grid", 4);
    k = gr_hash64_update (k, "\0a=x\0b=0.25\0#replica=1", 22);
    ck_assert_uint_eq (gr_expand_key (x), gr_hash64_final (k));

    /* Every task of the definition has its own key. */
    {
        uint64_t keys[12];
        for (uint64_t i = 0; i < 12; i++) {
            ck_assert_int_eq (gr_expand_select (x, g, i), 0);
            keys[i] = gr_expand_key (x);
            for (uint64_t j = 0; j < i; j++)
                ck_assert_uint_ne (keys[i], keys[j]);
        }
    }
    gr_expand_destroy (x);
    gr_expand_destroy (y);
    gr_spec_destroy (s);
    gr_spec_destroy (plain);
}
END_TEST

/* The run identity of specs without the placement keys is what it was
 * before they existed: runs started by older versions resume. */
START_TEST (test_hash_placement)
{
    static const struct {
        const char *file;
        uint64_t hash;
    } pinned[] = {
        {"spec-good-full.yaml", 0x0da62ed86253117fULL},
        {"spec-good-hostile.yaml", 0x7b15d81f084bc88aULL},
        {"spec-good-huge.yaml", 0x091accc82f8b5f12ULL},
        {"spec-good-minimal.yaml", 0x21a15ce22422e04eULL},
        {"spec-good-sweep.yaml", 0x48e8227836c827bbULL},
    };
    static const char *const base = "name: h\ntasks:\n  - name: a\n    command: [x]\n";
    static const struct {
        const char *extra;
        int same_as;  /* index of the case it must equal, or -1: differs from all before */
    } cases[] = {
        {"", -1},
        {"    replicas: 1\n", 0},
        {"    replicas: 2\n", -1},
        {"    replicas: 2\n    spread: node\n", 2},
        {"    replicas: 3\n", -1},
        {"    replicas: 2\n    spread: rack\n", -1},
        {"    spread: node\n", -1},
        {"    retry_away: node\n", -1},
        {"    require: {}\n", 0},
        {"    require: {gpu: a100, zone: east}\n", -1},
        {"    require: {zone: east, gpu: [a100]}\n", 9},
        {"    require: {gpu: [a100, h100]}\n", -1},
        {"    require: {gpu: [h100, a100]}\n", 11},
        {"    prefer: {gpu: [a100, h100]}\n", -1},
        {"    locality: era5\n", -1},
        {"    locality: era6\n", -1},
    };
    uint64_t hashes[sizeof (cases) / sizeof (cases[0])];

    for (size_t i = 0; i < sizeof (pinned) / sizeof (pinned[0]); i++) {
        gr_spec_t *s = load_ok (pinned[i].file);
        ck_assert_msg (s->hash == pinned[i].hash, "%s: hash %016" PRIx64 ", want %016" PRIx64,
                       pinned[i].file, s->hash, pinned[i].hash);
        gr_spec_destroy (s);
    }
    for (size_t i = 0; i < sizeof (cases) / sizeof (cases[0]); i++) {
        char text[512];
        gr_spec_t *s;
        snprintf (text, sizeof (text), "%s%s", base, cases[i].extra);
        s = parse_ok (text);
        hashes[i] = s->hash;
        gr_spec_destroy (s);
        if (cases[i].same_as >= 0)
            ck_assert_msg (hashes[i] == hashes[cases[i].same_as], "case %zu", i);
        else {
            for (size_t j = 0; j < i; j++)
                ck_assert_msg (hashes[i] != hashes[j], "case %zu equals case %zu", i, j);
        }
    }
}
END_TEST

START_TEST (test_pack_placement)
{
    gr_spec_t *a = load_ok ("spec-good-placement.yaml");
    gr_spec_t *b = NULL;
    gr_error_t e;
    void *buf;
    size_t len;

    ck_assert_int_eq (gr_spec_pack (a, &buf, &len), 0);
    ck_assert_msg (gr_spec_unpack (buf, len, &b, &e) == 0, "%s", e.text);
    free (buf);
    ck_assert_uint_eq (b->hash, a->hash);
    ck_assert_uint_eq (b->total, a->total);
    ck_assert (b->quarantine.enabled);
    ck_assert_int_eq (b->quarantine.level, a->quarantine.level);
    for (size_t i = 0; i < a->ntasks; i++) {
        const gr_taskdef_t *p = &a->tasks[i], *q = &b->tasks[i];
        ck_assert_uint_eq (p->replicas, q->replicas);
        ck_assert_int_eq (p->spread, q->spread);
        ck_assert_int_eq (p->retry_away, q->retry_away);
        ck_assert_uint_eq (p->nrequire, q->nrequire);
        for (size_t k = 0; k < p->nrequire; k++) {
            ck_assert_str_eq (p->require[k].key, q->require[k].key);
            ck_assert_uint_eq (p->require[k].nvalues, q->require[k].nvalues);
        }
        ck_assert_uint_eq (p->nprefer, q->nprefer);
        ck_assert_int_eq (p->locality == NULL, q->locality == NULL);
        ck_assert_int_eq (p->place_mark.line, q->place_mark.line);
    }
    gr_spec_destroy (a);
    gr_spec_destroy (b);
}
END_TEST

static Suite *spec_suite (void)
{
    Suite *s = suite_create ("spec");
    TCase *tc;

    tc = tcase_create ("parse");
    tcase_add_test (tc, test_minimal);
    tcase_add_test (tc, test_full);
    tcase_add_test (tc, test_full_render);
    tcase_add_test (tc, test_missing_spec);
    tcase_add_test (tc, test_examples);
    suite_add_tcase (s, tc);

    tc = tcase_create ("sweep");
    tcase_set_timeout (tc, 30);
    tcase_add_test (tc, test_product_order);
    tcase_add_test (tc, test_zip);
    tcase_add_test (tc, test_float_range);
    tcase_add_test (tc, test_int_range);
    tcase_add_test (tc, test_file_param);
    tcase_add_test (tc, test_huge_sweep);
    suite_add_tcase (s, tc);

    tc = tcase_create ("keys");
    tcase_add_test (tc, test_keys_distinct);
    tcase_add_test (tc, test_keys_pinned);
    tcase_add_test (tc, test_keys_stable);
    tcase_add_test (tc, test_pack_without_disk);
    tcase_add_test (tc, test_hash_normalized);
    suite_add_tcase (s, tc);

    tc = tcase_create ("templates");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_hostile);
    tcase_add_test (tc, test_hostile_fixture);
    tcase_add_test (tc, test_builtins_render);
    tcase_add_test (tc, test_params_string);
    tcase_add_test (tc, test_shell_quote);
    tcase_add_test (tc, test_templates);
    tcase_add_test (tc, test_render_too_long);
    suite_add_tcase (s, tc);

    tc = tcase_create ("errors");
    tcase_set_timeout (tc, 30);
    tcase_add_test (tc, test_check_resources);
    tcase_add_loop_test (tc, test_bad_fixture, 0, NBAD);
    tcase_add_test (tc, test_all_fixtures);
    tcase_add_test (tc, test_limits);
    tcase_add_test (tc, test_task_limits);
    tcase_add_test (tc, test_more_errors);
    tcase_add_test (tc, test_cycles_memory);
    suite_add_tcase (s, tc);

    tc = tcase_create ("scale");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_many_afters);
    suite_add_tcase (s, tc);

    tc = tcase_create ("placement");
    tcase_add_test (tc, test_placement_fixture);
    tcase_add_test (tc, test_placement_defaults);
    tcase_add_test (tc, test_quarantine);
    tcase_add_test (tc, test_placement_errors);
    tcase_add_test (tc, test_replica_expand);
    tcase_add_test (tc, test_hash_placement);
    tcase_add_test (tc, test_pack_placement);
    tcase_add_test (tc, test_group);
    tcase_add_test (tc, test_group_errors);
    suite_add_tcase (s, tc);
    return s;
}

int main (void)
{
    return gr_check_main (spec_suite ());
}
