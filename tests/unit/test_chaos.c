#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "src/common/chaos.h"
#include "src/common/error.h"
#include "src/journal/journal.h"

START_TEST (test_parse)
{
    gr_chaos_spec_t s;
    gr_error_t e;
    ck_assert_int_eq (gr_chaos_parse ("kill-task=0.01,kill-worker=0.002,delay=0.05:20ms,"
                                      "journal-eio=0.001,journal-enospc=1e-3,ckpt-eio=0.01,"
                                      "ckpt-enospc=1,output-eio=0.25,output-enospc=0.5,"
                                      "seed=42",
                                      &s, &e),
                      0);
    ck_assert_double_eq (s.rate[GR_CHAOS_OUTPUT_EIO], 0.25);
    ck_assert_double_eq (s.rate[GR_CHAOS_OUTPUT_ENOSPC], 0.5);
    ck_assert_double_eq (s.rate[GR_CHAOS_KILL_TASK], 0.01);
    ck_assert_double_eq (s.rate[GR_CHAOS_KILL_WORKER], 0.002);
    ck_assert_double_eq (s.rate[GR_CHAOS_DELAY], 0.05);
    ck_assert_double_eq_tol (s.delay, 0.02, 1e-12);
    ck_assert_double_eq (s.rate[GR_CHAOS_JOURNAL_EIO], 0.001);
    ck_assert_double_eq (s.rate[GR_CHAOS_JOURNAL_ENOSPC], 0.001);
    ck_assert_double_eq (s.rate[GR_CHAOS_CKPT_EIO], 0.01);
    ck_assert_double_eq (s.rate[GR_CHAOS_CKPT_ENOSPC], 1);
    ck_assert (s.seeded);
    ck_assert_uint_eq (s.seed, 42);
    ck_assert (gr_chaos_spec_any (&s));

    /* Items in any order, any subset; "off" and "" are nothing at all. */
    ck_assert_int_eq (gr_chaos_parse ("seed=7,journal-eio=0", &s, &e), 0);
    ck_assert (!gr_chaos_spec_any (&s));
    ck_assert (s.seeded && s.seed == 7);
    ck_assert_int_eq (gr_chaos_parse ("off", &s, &e), 0);
    ck_assert (!gr_chaos_spec_any (&s) && !s.seeded);
    ck_assert_int_eq (gr_chaos_parse ("", &s, &e), 0);
    ck_assert (!gr_chaos_spec_any (&s));
    ck_assert_int_eq (gr_chaos_parse (NULL, &s, &e), 0);
    ck_assert_int_eq (gr_chaos_parse (".5", &s, &e), -1);
}
END_TEST

/* Each bad spec fails with EINVAL, and the text names the bad item and
 * says what is allowed. */
START_TEST (test_parse_errors)
{
    static const struct {
        const char *spec;
        const char *want[2];
    } bad[] = {
        {"kil-task=0.1", {"unknown fault 'kil-task'", "kill-task, kill-worker, delay"}},
        {"kill-task=2", {"item 'kill-task=2'", "probability from 0 to 1"}},
        {"kill-task=-0.1", {"item 'kill-task=-0.1'", "probability"}},
        {"kill-task=nan", {"item 'kill-task=nan'", "probability"}},
        {"kill-task=0.1x", {"item 'kill-task=0.1x'", "probability"}},
        {"kill-task=", {"item 'kill-task='", "probability"}},
        {"kill-task", {"item 'kill-task' is not NAME=VALUE", "output-enospc"}},
        {"kill-task=0.1,,delay=0.1:1s", {"an empty item", "NAME=VALUE"}},
        {"kill-task=0.1,", {"an empty item", "NAME=VALUE"}},
        {"delay=0.1", {"item 'delay=0.1'", "delay=RATE:DURATION"}},
        {"delay=0.1:soon", {"item 'delay=0.1:soon'", "not a duration"}},
        {"delay=1.5:20ms", {"item 'delay=1.5:20ms'", "probability"}},
        {"seed=-3", {"item 'seed=-3'", "whole number"}},
        {"seed=1,seed=2", {"item 'seed=2'", "given twice"}},
        {"kill-task=0.1,kill-task=0.2", {"kill-task=0.2", "given twice"}},
    };
    for (size_t i = 0; i < sizeof (bad) / sizeof (bad[0]); i++) {
        gr_chaos_spec_t s = {.seed = 99};
        gr_error_t e = {.text = ""};
        errno = 0;
        ck_assert_msg (gr_chaos_parse (bad[i].spec, &s, &e) == -1, "accepted '%s'",
                       bad[i].spec);
        ck_assert_int_eq (errno, EINVAL);
        for (int k = 0; k < 2; k++)
            ck_assert_msg (strstr (e.text, bad[i].want[k]), "'%s': '%s' lacks '%s'",
                           bad[i].spec, e.text, bad[i].want[k]);
        ck_assert_uint_eq (s.seed, 99); /* untouched on failure */
    }
    char *longspec = malloc (GR_CHAOS_SPEC_MAX + 2);
    memset (longspec, 'x', GR_CHAOS_SPEC_MAX + 1);
    longspec[GR_CHAOS_SPEC_MAX + 1] = '\0';
    gr_chaos_spec_t s;
    gr_error_t e;
    ck_assert_int_eq (gr_chaos_parse (longspec, &s, &e), -1);
    ck_assert (strstr (e.text, "at most"));
    free (longspec);
}
END_TEST

static void same_spec (const gr_chaos_spec_t *a, const gr_chaos_spec_t *b)
{
    for (int i = 0; i < GR_CHAOS_NSITES; i++)
        ck_assert_msg (a->rate[i] == b->rate[i], "rate %d: %.17g != %.17g", i, a->rate[i],
                       b->rate[i]);
    ck_assert_msg (a->delay == b->delay, "delay %.17g != %.17g", a->delay, b->delay);
    ck_assert_uint_eq (a->seed, b->seed);
    ck_assert_int_eq (a->seeded, b->seeded);
}

START_TEST (test_format)
{
    gr_chaos_spec_t s, t;
    gr_error_t e;
    char buf[GR_CHAOS_SPEC_MAX];
    ck_assert_int_eq (gr_chaos_parse ("seed=5,delay=0.1:20ms,kill-task=0.3", &s, &e), 0);
    ck_assert_int_eq (gr_chaos_format (&s, buf, sizeof (buf)), 0);
    ck_assert_str_eq (buf, "kill-task=0.3,delay=0.1:0.02s,seed=5");
    ck_assert_int_eq (gr_chaos_parse (buf, &t, &e), 0);
    same_spec (&s, &t);

    /* Every rate at once, with odd values, reads back bit for bit. */
    for (int i = 0; i < GR_CHAOS_NSITES; i++)
        s.rate[i] = 1.0 / (3 + i);
    s.delay = 1.0 / 3;
    s.seed = UINT64_MAX;
    ck_assert_int_eq (gr_chaos_format (&s, buf, sizeof (buf)), 0);
    ck_assert_int_eq (gr_chaos_parse (buf, &t, &e), 0);
    same_spec (&s, &t);

    memset (&s, 0, sizeof (s));
    ck_assert_int_eq (gr_chaos_format (&s, buf, sizeof (buf)), 0);
    ck_assert_str_eq (buf, "off");
    s.rate[GR_CHAOS_KILL_WORKER] = 0.5;
    ck_assert_int_eq (gr_chaos_format (&s, buf, 8), -1);
    ck_assert_int_eq (errno, ENOSPC);
    ck_assert_str_eq (gr_chaos_site_name (GR_CHAOS_JOURNAL_ENOSPC), "journal-enospc");
    ck_assert_str_eq (gr_chaos_site_name (GR_CHAOS_NSITES), "?");
}
END_TEST

START_TEST (test_off)
{
    gr_chaos_disable ();
    ck_assert (!gr_chaos_on ());
    ck_assert (gr_chaos_current () == NULL);
    for (int i = 0; i < 1000; i++) {
        ck_assert (!gr_chaos_hit (GR_CHAOS_KILL_TASK));
        ck_assert_int_eq (gr_chaos_io (GR_CHAOS_IO_JOURNAL), 0);
    }
    ck_assert_double_eq (gr_chaos_uniform (GR_CHAOS_KILL_TASK), 0);
    ck_assert_uint_eq (gr_chaos_count (GR_CHAOS_KILL_TASK), 0);

    /* A spec with no rate leaves it off. */
    gr_chaos_spec_t s = {.seed = 1, .seeded = true};
    gr_chaos_enable (&s, 0);
    ck_assert (!gr_chaos_on ());
}
END_TEST

/* Draws of `site` for n events, as a string of 0 and 1. */
static void draws (gr_chaos_site_t site, int n, char *out)
{
    for (int i = 0; i < n; i++)
        out[i] = gr_chaos_hit (site) ? '1' : '0';
    out[n] = '\0';
}

START_TEST (test_rates_and_seeds)
{
    gr_chaos_spec_t s;
    gr_error_t e;
    char a[201], b[201], c[201];
    ck_assert_int_eq (gr_chaos_parse ("kill-task=0.25,kill-worker=1,delay=0.5:1s,seed=42", &s,
                                      &e),
                      0);
    gr_chaos_enable (&s, 3);
    ck_assert (gr_chaos_on ());
    ck_assert_double_eq (gr_chaos_current ()->rate[GR_CHAOS_KILL_TASK], 0.25);
    int hits = 0;
    for (int i = 0; i < 100000; i++)
        hits += gr_chaos_hit (GR_CHAOS_KILL_TASK);
    ck_assert_msg (hits > 24000 && hits < 26000, "%d hits of 100000 at 0.25", hits);
    ck_assert_uint_eq (gr_chaos_count (GR_CHAOS_KILL_TASK), (uint64_t)hits);
    for (int i = 0; i < 100; i++) {
        ck_assert (gr_chaos_hit (GR_CHAOS_KILL_WORKER)); /* rate 1: always */
        ck_assert (!gr_chaos_hit (GR_CHAOS_JOURNAL_EIO)); /* rate 0: never */
    }
    ck_assert_uint_eq (gr_chaos_count (GR_CHAOS_KILL_WORKER), 100);
    ck_assert_uint_eq (gr_chaos_count (GR_CHAOS_JOURNAL_EIO), 0);
    for (int i = 0; i < 1000; i++) {
        double u = gr_chaos_uniform (GR_CHAOS_DELAY);
        ck_assert (u >= 0 && u < 1);
    }

    /* The same seed and rank repeat a site's decisions, whatever the other
     * sites drew in between; another rank or seed differs. */
    gr_chaos_enable (&s, 3);
    draws (GR_CHAOS_DELAY, 200, a);
    gr_chaos_enable (&s, 3);
    for (int i = 0; i < 77; i++)
        (void)gr_chaos_hit (GR_CHAOS_KILL_TASK);
    draws (GR_CHAOS_DELAY, 200, b);
    ck_assert_str_eq (a, b);
    gr_chaos_enable (&s, 4);
    draws (GR_CHAOS_DELAY, 200, c);
    ck_assert_str_ne (a, c);
    s.seed = 43;
    gr_chaos_enable (&s, 3);
    draws (GR_CHAOS_DELAY, 200, c);
    ck_assert_str_ne (a, c);
    /* enable starts the counts afresh */
    ck_assert_uint_eq (gr_chaos_count (GR_CHAOS_KILL_TASK), 0);
    gr_chaos_disable ();
    ck_assert (!gr_chaos_hit (GR_CHAOS_KILL_WORKER));
}
END_TEST

START_TEST (test_io)
{
    gr_chaos_spec_t s;
    gr_error_t e;

    /* EIO fails that write alone. */
    ck_assert_int_eq (gr_chaos_parse ("journal-eio=0.5,seed=1", &s, &e), 0);
    gr_chaos_enable (&s, 0);
    int fails = 0, oks = 0;
    for (int i = 0; i < 1000; i++) {
        errno = 0;
        if (gr_chaos_io (GR_CHAOS_IO_JOURNAL) < 0) {
            ck_assert_int_eq (errno, EIO);
            fails++;
        }
        else
            oks++;
        /* checkpoints have no rate here */
        ck_assert_int_eq (gr_chaos_io (GR_CHAOS_IO_CKPT), 0);
    }
    ck_assert (fails > 400 && oks > 400);
    ck_assert_uint_eq (gr_chaos_count (GR_CHAOS_JOURNAL_EIO), (uint64_t)fails);

    /* ENOSPC: the disk stays full for that kind of write, counted once;
     * the other kind goes on. */
    ck_assert_int_eq (gr_chaos_parse ("ckpt-enospc=0.1,ckpt-eio=1,seed=1", &s, &e), 0);
    gr_chaos_enable (&s, 0);
    int n = 0;
    while (gr_chaos_count (GR_CHAOS_CKPT_ENOSPC) == 0 && n < 10000) {
        errno = 0;
        ck_assert_int_eq (gr_chaos_io (GR_CHAOS_IO_CKPT), -1);
        n++;
        ck_assert_int_eq (errno, gr_chaos_count (GR_CHAOS_CKPT_ENOSPC) ? ENOSPC : EIO);
    }
    ck_assert_uint_eq (gr_chaos_count (GR_CHAOS_CKPT_ENOSPC), 1);
    uint64_t eios = gr_chaos_count (GR_CHAOS_CKPT_EIO);
    for (int i = 0; i < 100; i++) {
        errno = 0;
        ck_assert_int_eq (gr_chaos_io (GR_CHAOS_IO_CKPT), -1);
        ck_assert_int_eq (errno, ENOSPC);
        ck_assert_int_eq (gr_chaos_io (GR_CHAOS_IO_JOURNAL), 0);
    }
    ck_assert_uint_eq (gr_chaos_count (GR_CHAOS_CKPT_ENOSPC), 1);
    ck_assert_uint_eq (gr_chaos_count (GR_CHAOS_CKPT_EIO), eios);
    /* Task output: its own kind, its own full disk. */
    ck_assert_int_eq (gr_chaos_parse ("output-enospc=1,seed=2", &s, &e), 0);
    gr_chaos_enable (&s, 0);
    errno = 0;
    ck_assert_int_eq (gr_chaos_io (GR_CHAOS_IO_OUTPUT), -1);
    ck_assert_int_eq (errno, ENOSPC);
    ck_assert_int_eq (gr_chaos_io (GR_CHAOS_IO_OUTPUT), -1);
    ck_assert_uint_eq (gr_chaos_count (GR_CHAOS_OUTPUT_ENOSPC), 1);
    ck_assert_int_eq (gr_chaos_io (GR_CHAOS_IO_JOURNAL), 0);
    ck_assert_int_eq (gr_chaos_io (GR_CHAOS_IO_CKPT), 0);
    /* A new process (here: enable again) starts with a good disk. */
    s.rate[GR_CHAOS_OUTPUT_ENOSPC] = 0;
    s.rate[GR_CHAOS_CKPT_ENOSPC] = 0;
    s.rate[GR_CHAOS_CKPT_EIO] = 0;
    s.rate[GR_CHAOS_KILL_TASK] = 0.5;
    gr_chaos_enable (&s, 0);
    ck_assert_int_eq (gr_chaos_io (GR_CHAOS_IO_CKPT), 0);
    ck_assert_int_eq (gr_chaos_io (GR_CHAOS_IO_OUTPUT), 0);
    gr_chaos_disable ();
}
END_TEST

/* The journal's two write paths with faults injected: a failed commit
 * leaves the file as it was after the last good one (it replays, with
 * nothing torn), the records stay buffered, and a good disk takes them
 * later. */
static int count_rec (const gr_jrec_t *rec, void *arg)
{
    (void)rec;
    (*(int *)arg)++;
    return 0;
}

static int replayed (const char *path)
{
    gr_journal_info_t info;
    gr_error_t e;
    int n = 0;
    ck_assert_int_eq (gr_journal_replay (path, count_rec, &n, &info, &e), 0);
    ck_assert_int_eq (info.damage, GR_JDAMAGE_NONE);
    ck_assert_uint_eq (info.valid_len, info.file_len);
    return n;
}

static void put_lost (gr_journal_t *j, uint32_t rank)
{
    gr_error_t e;
    gr_jrec_t rec = {.type = GR_JREC_WORKER_LOST, .time = 1.0};
    rec.lost.rank = rank;
    ck_assert_int_eq (gr_journal_append (j, &rec, &e), 0);
}

START_TEST (test_journal_faults)
{
    char dir[] = "/tmp/gr-chaos-XXXXXX", path[64], cmd[96];
    gr_journal_opts_t o;
    gr_chaos_spec_t s;
    gr_error_t e;

    ck_assert_ptr_nonnull (mkdtemp (dir));
    snprintf (path, sizeof (path), "%s/journal", dir);
    gr_journal_opts_init (&o);
    o.commit_interval = 0;
    gr_journal_t *j = gr_journal_open (path, 0, &o, &e);
    ck_assert_ptr_nonnull (j);
    put_lost (j, 1);
    ck_assert_int_eq (gr_journal_sync (j, &e), 0);

    /* EIO: that commit fails; the next one, with a good disk, writes it. */
    ck_assert_int_eq (gr_chaos_parse ("journal-eio=1", &s, &e), 0);
    gr_chaos_enable (&s, 0);
    put_lost (j, 2);
    errno = 0;
    ck_assert_int_eq (gr_journal_sync (j, &e), -1);
    ck_assert_int_eq (errno, EIO);
    ck_assert (strstr (e.text, "cannot write journal"));
    ck_assert_int_eq (replayed (path), 1);
    gr_chaos_disable ();
    ck_assert_int_eq (gr_journal_sync (j, &e), 0);
    ck_assert_int_eq (replayed (path), 2);

    /* ENOSPC in the background writer: the commit after it reports it,
     * and every later write fails, close's too. */
    ck_assert_int_eq (gr_journal_close (j, &e), 0);
    o.background = true;
    ck_assert_ptr_nonnull (j = gr_journal_open (path, 0, &o, &e));
    ck_assert_int_eq (gr_chaos_parse ("journal-enospc=0.5,seed=3", &s, &e), 0);
    gr_chaos_enable (&s, 0);
    int rc = 0, appended = 2;
    /* A commit a millisecond; the writer may still be busy with the last
     * one (then the records wait for the next). */
    for (int i = 0; i < 10000 && rc >= 0; i++) {
        put_lost (j, 3);
        appended++;
        rc = gr_journal_maybe_sync (j, 1e9, &e);
        usleep (1000);
    }
    ck_assert_int_eq (rc, -1);
    ck_assert_int_eq (errno, ENOSPC);
    ck_assert (strstr (e.text, "No space left on device"));
    ck_assert_uint_eq (gr_chaos_count (GR_CHAOS_JOURNAL_ENOSPC), 1);
    /* The writer is idle now: what it committed is whole. */
    int before = replayed (path);
    ck_assert_int_ge (before, 2);
    ck_assert_int_lt (before, appended);
    ck_assert_int_eq (gr_journal_sync (j, &e), -1);
    ck_assert_int_eq (errno, ENOSPC);
    ck_assert_int_eq (gr_journal_close (j, &e), -1);
    ck_assert_int_eq (replayed (path), before);

    /* A new process has a good disk: it appends after the last commit. */
    gr_chaos_disable ();
    o.background = false;
    ck_assert_ptr_nonnull (j = gr_journal_open (path, 0, &o, &e));
    put_lost (j, 4);
    ck_assert_int_eq (gr_journal_close (j, &e), 0);
    ck_assert_int_eq (replayed (path), before + 1);
    snprintf (cmd, sizeof (cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq (system (cmd), 0);
}
END_TEST

static Suite *suite (void)
{
    Suite *s = suite_create ("chaos");
    TCase *tc = tcase_create ("chaos");
    tcase_add_test (tc, test_parse);
    tcase_add_test (tc, test_parse_errors);
    tcase_add_test (tc, test_format);
    tcase_add_test (tc, test_off);
    tcase_add_test (tc, test_rates_and_seeds);
    tcase_add_test (tc, test_io);
    tcase_add_test (tc, test_journal_faults);
    suite_add_tcase (s, tc);
    return s;
}

int main (void)
{
    return gr_check_main (suite ());
}
