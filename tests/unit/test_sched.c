#include "config.h"

#include <check.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "src/sched/quarantine.h"
#include "src/sched/sched.h"
#include "src/spec/spec.h"

#define NOLIMIT 1e30

static gr_spec_t *parse (const char *yaml)
{
    gr_spec_t *spec = NULL;
    gr_error_t e = {.text = ""};
    if (gr_spec_parse (yaml, strlen (yaml), "test.yaml", NULL, 0, &spec, &e) < 0)
        ck_abort_msg ("spec did not parse: %s", e.text);
    return spec;
}

static gr_result_rec_t result (const gr_assign_rec_t *a, int exit_code, int sig,
                               uint32_t flags)
{
    gr_result_rec_t r = {.id = a->id, .wall = 0.5, .exit_code = exit_code,
                         .signal = sig, .flags = flags};
    return r;
}

START_TEST (test_backoff)
{
    gr_retry_t r = {.max = 10, .backoff = 1, .backoff_max = 30, .jitter = 0.5};
    /* Without randomness the delay doubles up to the cap. */
    ck_assert_double_eq (gr_backoff_delay (&r, 1, 0), 1);
    ck_assert_double_eq (gr_backoff_delay (&r, 2, 0), 2);
    ck_assert_double_eq (gr_backoff_delay (&r, 3, 0), 4);
    ck_assert_double_eq (gr_backoff_delay (&r, 5, 0), 16);
    ck_assert_double_eq (gr_backoff_delay (&r, 6, 0), 30);
    ck_assert_double_eq (gr_backoff_delay (&r, 1000, 0), 30);
    /* Jitter takes off up to half, never more, never adds. */
    ck_assert_double_eq (gr_backoff_delay (&r, 3, 0.999999), 4 * (1 - 0.5 * 0.999999));
    for (int i = 0; i < 100; i++) {
        double u = i / 100.0;
        double d = gr_backoff_delay (&r, 4, u);
        ck_assert (d <= 8 && d >= 4);
    }
    r.jitter = 0;
    ck_assert_double_eq (gr_backoff_delay (&r, 4, 0.7), 8);
    r.jitter = 1;
    ck_assert_double_eq (gr_backoff_delay (&r, 4, 0.5), 4);
}
END_TEST

START_TEST (test_order_and_fit)
{
    gr_spec_t *spec = parse ("name: t\n"
                             "tasks:\n"
                             "  - name: a\n"
                             "    command: [echo, '{x}']\n"
                             "    params: {x: [1, 2, 3]}\n"
                             "  - name: big\n"
                             "    command: [echo]\n"
                             "    resources: {cpus: 4}\n");
    gr_sched_t *s = gr_sched_create (spec, 1);
    gr_assign_rec_t a[4];
    ck_assert_ptr_nonnull (s);
    /* A 2-cpu worker gets a's three tasks in order, never big. */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq (gr_sched_next (s, 0, 1, 2, 0, 0, NOLIMIT, &a[i]), 1);
        ck_assert_uint_eq (a[i].def, 0);
        ck_assert_uint_eq (a[i].index, (uint64_t)i);
        ck_assert_uint_eq (a[i].attempt, 1);
    }
    ck_assert_int_eq (gr_sched_next (s, 0, 1, 2, 0, 0, NOLIMIT, &a[3]), 0);
    /* A 4-cpu worker gets big. */
    ck_assert_int_eq (gr_sched_next (s, 0, 2, 4, 0, 0, NOLIMIT, &a[3]), 1);
    ck_assert_uint_eq (a[3].def, 1);
    ck_assert (a[0].key != a[1].key && a[1].key != a[2].key);
    ck_assert (!gr_sched_finished (s));
    gr_outcome_t o;
    for (int i = 0; i < 4; i++) {
        gr_result_rec_t r = result (&a[i], 0, 0, 0);
        ck_assert_int_eq (gr_sched_complete (s, 1, &r, &o), 0);
        ck_assert_int_eq (o.kind, GR_OUTCOME_DONE);
    }
    ck_assert (gr_sched_finished (s));
    ck_assert_uint_eq (gr_sched_stats (s)->done, 4);
    /* A second report of the same attempt is stale, not a completion. */
    gr_result_rec_t dup = result (&a[0], 0, 0, 0);
    ck_assert_int_eq (gr_sched_complete (s, 2, &dup, &o), 0);
    ck_assert_int_eq (o.kind, GR_OUTCOME_STALE);
    ck_assert_uint_eq (gr_sched_stats (s)->done, 4);
    gr_sched_destroy (s);
    gr_spec_destroy (spec);
}
END_TEST

START_TEST (test_retry_then_fail)
{
    gr_spec_t *spec = parse ("name: t\n"
                             "tasks:\n"
                             "  - name: a\n"
                             "    command: [false]\n"
                             "    retries: {max: 2, backoff: 10s, jitter: 0}\n"
                             "    success: [0, 4]\n");
    gr_sched_t *s = gr_sched_create (spec, 1);
    gr_assign_rec_t a;
    gr_outcome_t o;
    ck_assert_int_eq (gr_sched_next (s, 0, 1, 1, 0, 0, NOLIMIT, &a), 1);
    gr_result_rec_t r = result (&a, 1, 0, 0);
    ck_assert_int_eq (gr_sched_complete (s, 100, &r, &o), 0);
    ck_assert_int_eq (o.kind, GR_OUTCOME_RETRY);
    ck_assert_double_eq (o.delay, 10);
    ck_assert_str_eq (o.reason, "exit 1");
    /* Not before its backoff has passed. */
    ck_assert_int_eq (gr_sched_next (s, 105, 1, 1, 0, 0, NOLIMIT, &a), 0);
    ck_assert_double_eq (gr_sched_next_retry (s), 110);
    ck_assert (!gr_sched_finished (s));
    ck_assert_int_eq (gr_sched_next (s, 110, 1, 1, 0, 0, NOLIMIT, &a), 1);
    ck_assert_uint_eq (a.attempt, 2);
    r = result (&a, 0, 0, GR_RES_TIMEOUT);
    ck_assert_int_eq (gr_sched_complete (s, 120, &r, &o), 0);
    ck_assert_int_eq (o.kind, GR_OUTCOME_RETRY);
    ck_assert_double_eq (o.delay, 20);
    ck_assert_ptr_nonnull (strstr (o.reason, "timeout"));
    ck_assert_int_eq (gr_sched_next (s, 140, 1, 1, 0, 0, NOLIMIT, &a), 1);
    ck_assert_uint_eq (a.attempt, 3);
    r = result (&a, 2, 0, 0);
    ck_assert_int_eq (gr_sched_complete (s, 141, &r, &o), 0);
    ck_assert_int_eq (o.kind, GR_OUTCOME_FAILED);
    ck_assert (gr_sched_finished (s));
    const gr_sched_stats_t *st = gr_sched_stats (s);
    ck_assert_uint_eq (st->failed, 1);
    ck_assert_uint_eq (st->retries, 2);
    ck_assert_uint_eq (st->timeouts, 1);
    ck_assert_uint_eq (st->attempts, 3);
    const gr_outcome_t *f;
    ck_assert_int_eq (gr_sched_failures (s, &f), 1);
    ck_assert_str_eq (f[0].reason, "exit 2");
    gr_sched_destroy (s);
    gr_spec_destroy (spec);
}
END_TEST

START_TEST (test_success_codes)
{
    gr_spec_t *spec = parse ("name: t\ntasks:\n  - name: a\n    command: [x]\n"
                             "    success: [0, 4]\n");
    gr_sched_t *s = gr_sched_create (spec, 1);
    gr_assign_rec_t a;
    gr_outcome_t o;
    ck_assert_int_eq (gr_sched_next (s, 0, 1, 1, 0, 0, NOLIMIT, &a), 1);
    gr_result_rec_t r = result (&a, 4, 0, 0);
    ck_assert_int_eq (gr_sched_complete (s, 1, &r, &o), 0);
    ck_assert_int_eq (o.kind, GR_OUTCOME_DONE);
    gr_sched_destroy (s);
    gr_spec_destroy (spec);
}
END_TEST

START_TEST (test_poison)
{
    gr_spec_t *spec = parse ("name: t\n"
                             "tasks:\n"
                             "  - name: a\n"
                             "    command: [crash]\n"
                             "    retries: {max: 10, backoff: 0, crash_limit: 2}\n");
    gr_sched_t *s = gr_sched_create (spec, 1);
    gr_assign_rec_t a;
    gr_outcome_t o;
    ck_assert_int_eq (gr_sched_next (s, 0, 1, 1, 0, 0, NOLIMIT, &a), 1);
    gr_result_rec_t r = result (&a, -1, 11, 0);
    ck_assert_int_eq (gr_sched_complete (s, 1, &r, &o), 0);
    ck_assert_int_eq (o.kind, GR_OUTCOME_RETRY);
    ck_assert_str_eq (o.reason, "killed by SIGSEGV");
    /* A timeout kill is not a crash and does not count toward poison. */
    ck_assert_int_eq (gr_sched_next (s, 2, 1, 1, 0, 0, NOLIMIT, &a), 1);
    r = result (&a, -1, 15, GR_RES_TIMEOUT);
    ck_assert_int_eq (gr_sched_complete (s, 3, &r, &o), 0);
    ck_assert_int_eq (o.kind, GR_OUTCOME_RETRY);
    ck_assert_int_eq (gr_sched_next (s, 4, 1, 1, 0, 0, NOLIMIT, &a), 1);
    r = result (&a, -1, 11, 0);
    ck_assert_int_eq (gr_sched_complete (s, 5, &r, &o), 0);
    ck_assert_int_eq (o.kind, GR_OUTCOME_POISON);
    ck_assert (gr_sched_finished (s));
    ck_assert_uint_eq (gr_sched_stats (s)->poison, 1);
    ck_assert_uint_eq (gr_sched_stats (s)->crashes, 2);
    gr_sched_destroy (s);
    gr_spec_destroy (spec);
}
END_TEST

START_TEST (test_dag)
{
    gr_spec_t *spec = parse ("name: t\n"
                             "tasks:\n"
                             "  - name: prep\n"
                             "    command: [p]\n"
                             "    params: {i: [1, 2]}\n"
                             "  - name: main\n"
                             "    command: [m]\n"
                             "    after: prep\n"
                             "  - name: other\n"
                             "    command: [o]\n"
                             "  - name: fin\n"
                             "    command: [f]\n"
                             "    after: [main, other]\n");
    gr_sched_t *s = gr_sched_create (spec, 1);
    gr_assign_rec_t a[3], b;
    gr_outcome_t o;
    /* prep (both) and other are ready; main and fin wait. */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq (gr_sched_next (s, 0, 1, 8, 0, 0, NOLIMIT, &a[i]), 1);
    ck_assert_uint_eq (a[0].def, 0);
    ck_assert_uint_eq (a[1].def, 0);
    ck_assert_uint_eq (a[2].def, 2);
    ck_assert_int_eq (gr_sched_next (s, 0, 1, 8, 0, 0, NOLIMIT, &b), 0);
    gr_result_rec_t r = result (&a[0], 0, 0, 0);
    gr_sched_complete (s, 1, &r, &o);
    ck_assert_int_eq (gr_sched_next (s, 1, 1, 8, 0, 0, NOLIMIT, &b), 0);
    r = result (&a[1], 0, 0, 0);
    gr_sched_complete (s, 1, &r, &o);
    ck_assert_int_eq (gr_sched_next (s, 1, 1, 8, 0, 0, NOLIMIT, &b), 1);
    ck_assert_uint_eq (b.def, 1);
    r = result (&b, 0, 0, 0);
    gr_sched_complete (s, 2, &r, &o);
    /* fin still waits for other, which now fails: fin is skipped. */
    ck_assert_int_eq (gr_sched_next (s, 2, 1, 8, 0, 0, NOLIMIT, &b), 0);
    r = result (&a[2], 1, 0, 0);
    gr_sched_complete (s, 3, &r, &o);
    ck_assert_int_eq (o.kind, GR_OUTCOME_FAILED);
    ck_assert_int_eq (gr_sched_next (s, 3, 1, 8, 0, 0, NOLIMIT, &b), 0);
    ck_assert (gr_sched_finished (s));
    const gr_sched_stats_t *st = gr_sched_stats (s);
    ck_assert_uint_eq (st->done, 3);
    ck_assert_uint_eq (st->failed, 1);
    ck_assert_uint_eq (st->skipped, 1);
    gr_sched_destroy (s);
    gr_spec_destroy (spec);
}
END_TEST

START_TEST (test_lazy_memory)
{
    /* Ten million tasks: the scheduler holds only what is in flight. */
    gr_spec_t *spec = parse ("name: t\ntasks:\n  - name: n\n    builtin: noop\n"
                             "    params: {i: {range: [1, 10000000]}}\n");
    gr_sched_t *s = gr_sched_create (spec, 1);
    gr_assign_rec_t a;
    gr_outcome_t o;
    ck_assert_uint_eq (gr_sched_stats (s)->total, 10000000);
    for (int round = 0; round < 1000; round++) {
        ck_assert_int_eq (gr_sched_next (s, 0, 1, 1, 0, 0, NOLIMIT, &a), 1);
        gr_result_rec_t r = result (&a, 0, 0, 0);
        gr_sched_complete (s, 0, &r, &o);
        ck_assert_int_eq (o.kind, GR_OUTCOME_DONE);
        /* Slots are reused: the id's slot part stays 0. */
        ck_assert_uint_eq (a.id & 0xffffffffu, 0);
    }
    ck_assert_uint_eq (a.index, 999);
    gr_sched_destroy (s);
    gr_spec_destroy (spec);
}
END_TEST

START_TEST (test_slowest)
{
    gr_spec_t *spec = parse ("name: t\ntasks:\n  - name: a\n    command: [x]\n"
                             "    params: {i: {range: [1, 20]}}\n");
    gr_sched_t *s = gr_sched_create (spec, 1);
    gr_assign_rec_t a;
    gr_outcome_t o;
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq (gr_sched_next (s, 0, 1, 1, 0, 0, NOLIMIT, &a), 1);
        gr_result_rec_t r = result (&a, 0, 0, 0);
        r.wall = (double)((i * 7) % 20);
        gr_sched_complete (s, 0, &r, &o);
    }
    const gr_slow_task_t *slow;
    int n = gr_sched_slowest (s, &slow);
    ck_assert_int_eq (n, GR_SCHED_SLOWEST);
    for (int i = 0; i < n; i++)
        ck_assert_double_eq (slow[i].wall, 19 - i);
    gr_sched_destroy (s);
    gr_spec_destroy (spec);
}
END_TEST

START_TEST (test_restore)
{
    const char *yaml = "name: t\n"
                       "tasks:\n"
                       "  - name: a\n"
                       "    command: [x]\n"
                       "    params: {i: {range: [0, 5]}}\n"
                       "    retries: {max: 3, backoff: 0}\n"
                       "  - name: b\n"
                       "    command: [y]\n"
                       "    after: a\n";
    gr_spec_t *spec = parse (yaml);
    gr_sched_t *s = gr_sched_create (spec, 1);
    gr_assign_rec_t a[6];
    gr_outcome_t o;
    /* A first incarnation hands out all six tasks of a. */
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq (gr_sched_next (s, 0, 1, 8, 0, 0, NOLIMIT, &a[i]), 1);
    uint64_t keys[6];
    for (int i = 0; i < 6; i++)
        keys[i] = a[i].key;
    gr_sched_destroy (s);

    /* Its journal: 0 done, then done again (a duplicate); 1 done; 2 failed
     * for good; 3 in flight (start, no end); 4 failed, to be retried;
     * 5 never started. */
    s = gr_sched_create (spec, 1);
    gr_jstart_t st;
    for (int i = 0; i < 5; i++) {
        st = (gr_jstart_t){.key = keys[i], .index = (uint64_t)i, .def = 0, .attempt = 1};
        ck_assert_int_eq (gr_sched_restore_start (s, &st, 1), 0);
    }
    gr_jend_t e = {.key = keys[0], .index = 0, .def = 0, .attempt = 1,
                   .outcome = GR_JOUT_DONE, .wall = 2.0};
    ck_assert_int_eq (gr_sched_restore_end (s, &e, 1), 0);
    e.attempt = 2;
    ck_assert_int_eq (gr_sched_restore_end (s, &e, 2), 0);
    e = (gr_jend_t){.key = keys[1], .index = 1, .attempt = 1, .outcome = GR_JOUT_DONE};
    ck_assert_int_eq (gr_sched_restore_end (s, &e, 1), 0);
    e = (gr_jend_t){.key = keys[2], .index = 2, .attempt = 1, .exit_code = 9,
                    .outcome = GR_JOUT_FAILED};
    ck_assert_int_eq (gr_sched_restore_end (s, &e, 1), 0);
    e = (gr_jend_t){.key = keys[4], .index = 4, .attempt = 1, .exit_code = 1,
                    .outcome = GR_JOUT_RETRY};
    ck_assert_int_eq (gr_sched_restore_end (s, &e, 1), 0);
    ck_assert_int_eq (gr_sched_restore_finish (s, false), 0);

    /* Only 3, 4 and 5 run again; 4 continues at attempt 2. */
    gr_assign_rec_t b[4];
    int n = 0;
    while (n < 4 && gr_sched_next (s, 0, 1, 8, 0, 0, NOLIMIT, &b[n]) == 1)
        n++;
    ck_assert_int_eq (n, 3);
    ck_assert_uint_eq (b[0].index, 3);
    ck_assert_uint_eq (b[0].attempt, 2);
    ck_assert_uint_eq (b[1].index, 4);
    ck_assert_uint_eq (b[1].attempt, 2);
    ck_assert_uint_eq (b[2].index, 5);
    ck_assert_uint_eq (b[2].attempt, 1);
    const gr_sched_stats_t *sst = gr_sched_stats (s);
    ck_assert_uint_eq (sst->done, 2);
    ck_assert_uint_eq (sst->resumed_done, 2);
    ck_assert_uint_eq (sst->duplicates, 1);
    ck_assert_uint_eq (sst->failed, 1);
    const gr_outcome_t *f;
    ck_assert_int_eq (gr_sched_failures (s, &f), 1);
    ck_assert_str_eq (f[0].reason, "exit 9");
    for (int i = 0; i < 3; i++) {
        gr_result_rec_t r = result (&b[i], 0, 0, 0);
        gr_sched_complete (s, 1, &r, &o);
        ck_assert_int_eq (o.kind, GR_OUTCOME_DONE);
    }
    /* a had a failure, so b is skipped, and the run is over. */
    ck_assert_int_eq (gr_sched_next (s, 1, 1, 8, 0, 0, NOLIMIT, &b[0]), 0);
    ck_assert (gr_sched_finished (s));
    ck_assert_uint_eq (sst->done, 5);
    ck_assert_uint_eq (sst->skipped, 1);
    const gr_task_row_t *rows;
    ck_assert_uint_eq (gr_sched_rows (s, &rows), 6);
    gr_sched_destroy (s);

    /* With retry_failed, task 2 runs again as attempt 2, and b runs. */
    s = gr_sched_create (spec, 1);
    e = (gr_jend_t){.key = keys[2], .index = 2, .attempt = 1, .exit_code = 9,
                    .outcome = GR_JOUT_FAILED};
    ck_assert_int_eq (gr_sched_restore_end (s, &e, 1), 0);
    ck_assert_int_eq (gr_sched_restore_finish (s, true), 0);
    int seen2 = 0;
    while (gr_sched_next (s, 0, 1, 8, 0, 0, NOLIMIT, &b[0]) == 1) {
        if (b[0].index == 2 && b[0].def == 0) {
            ck_assert_uint_eq (b[0].attempt, 2);
            seen2++;
        }
        gr_result_rec_t r = result (&b[0], 0, 0, 0);
        gr_sched_complete (s, 1, &r, &o);
    }
    ck_assert_int_eq (seen2, 1);
    ck_assert (gr_sched_finished (s));
    ck_assert_uint_eq (gr_sched_stats (s)->done, 7);
    gr_sched_destroy (s);
    gr_spec_destroy (spec);
}
END_TEST

START_TEST (test_requeue)
{
    gr_spec_t *spec = parse ("name: t\ntasks:\n  - name: a\n    command: [x]\n"
                             "    params: {i: {range: [1, 4]}}\n");
    gr_sched_t *s = gr_sched_create (spec, 1);
    gr_assign_rec_t a[4], b;
    gr_outcome_t o;
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq (gr_sched_next (s, 0, 1 + i % 2, 8, 0, 0, NOLIMIT, &a[i]), 1);
    /* Worker 2 is lost: its two tasks come back, not as failures. */
    ck_assert_int_eq (gr_sched_requeue_worker (s, 2, NULL, NULL), 2);
    ck_assert_uint_eq (gr_sched_stats (s)->requeued, 2);
    ck_assert_uint_eq (gr_sched_stats (s)->failed, 0);
    /* A late result from the lost worker is stale. */
    gr_result_rec_t r = result (&a[1], 0, 0, 0);
    gr_sched_complete (s, 1, &r, &o);
    ck_assert_int_eq (o.kind, GR_OUTCOME_STALE);
    /* A drain gives back a queued task (no attempt used) and kills one. */
    r = result (&a[0], 0, 0, GR_RES_RETURNED);
    gr_sched_complete (s, 1, &r, &o);
    ck_assert_int_eq (o.kind, GR_OUTCOME_REQUEUED);
    r = result (&a[2], -1, 15, GR_RES_KILLED);
    gr_sched_complete (s, 1, &r, &o);
    ck_assert_int_eq (o.kind, GR_OUTCOME_REQUEUED);
    ck_assert_uint_eq (gr_sched_stats (s)->failed, 0);
    int n = 0;
    uint32_t attempts[4] = {0};
    while (gr_sched_next (s, 2, 3, 8, 0, 0, NOLIMIT, &b) == 1) {
        attempts[b.index] = b.attempt;
        r = result (&b, 0, 0, 0);
        gr_sched_complete (s, 3, &r, &o);
        ck_assert_int_eq (o.kind, GR_OUTCOME_DONE);
        n++;
    }
    ck_assert_int_eq (n, 4);
    ck_assert_uint_eq (attempts[0], 1); /* returned: its attempt did not count */
    ck_assert_uint_eq (attempts[1], 2);
    ck_assert_uint_eq (attempts[2], 2);
    ck_assert_uint_eq (attempts[3], 2);
    ck_assert (gr_sched_finished (s));
    ck_assert_uint_eq (gr_sched_stats (s)->done, 4);
    gr_sched_destroy (s);
    gr_spec_destroy (spec);
}
END_TEST

START_TEST (test_max_duration)
{
    gr_spec_t *spec = parse ("name: t\ntasks:\n"
                             "  - name: long\n    command: [x]\n    timeout: 100s\n"
                             "  - name: short\n    command: [y]\n    timeout: 5s\n"
                             "  - name: unknown\n    command: [z]\n");
    gr_sched_t *s = gr_sched_create (spec, 1);
    gr_assign_rec_t a;
    gr_outcome_t o;
    /* With 10 s left only short (timeout 5 s) and unknown start. */
    ck_assert_int_eq (gr_sched_next (s, 0, 1, 8, 0, 0, 10, &a), 1);
    ck_assert_uint_eq (a.def, 1);
    gr_result_rec_t r = result (&a, 0, 0, 0);
    gr_sched_complete (s, 1, &r, &o);
    ck_assert_int_eq (gr_sched_next (s, 0, 1, 8, 0, 0, 10, &a), 1);
    ck_assert_uint_eq (a.def, 2);
    r = result (&a, 0, 0, 0);
    gr_sched_complete (s, 1, &r, &o);
    ck_assert_int_eq (gr_sched_next (s, 0, 1, 8, 0, 0, 10, &a), 0);
    ck_assert (!gr_sched_finished (s));
    ck_assert_int_eq (gr_sched_next (s, 0, 1, 8, 0, 0, 1000, &a), 1);
    ck_assert_uint_eq (a.def, 0);
    gr_sched_destroy (s);
    gr_spec_destroy (spec);
}
END_TEST
/* Five ranks: 0 is the master; 1 and 2 share rack 0 (nodes 0 and 1),
 * 3 is rack 1, 4 is rack 2, all in zone 0. */
#define U UINT32_MAX
static const uint32_t doms5[] = {U, U, U, 0, 0, 0, 0, 0, 1, 0, 1, 2, 0, 2, 3};

START_TEST (test_spread)
{
    gr_spec_t *spec = parse ("name: t\n"
                             "tasks:\n"
                             "  - name: r\n"
                             "    command: [echo, '{x}']\n"
                             "    params: {x: [1, 2]}\n"
                             "    replicas: 3\n"
                             "    spread: rack\n"
                             "    retries: {max: 1, backoff: 0, jitter: 0}\n");
    gr_sched_t *s = gr_sched_create (spec, 1);
    gr_assign_rec_t a1, a2, a3, a4, a5, x;
    gr_outcome_t o;

    ck_assert_ptr_nonnull (s);
    ck_assert_int_eq (spec->tasks[0].count, 6);
    ck_assert_int_eq (gr_sched_set_placement (s, 5, doms5, NULL), 0);
    /* Replica 0 of task 0 goes to rank 1; rank 2 shares its rack, so it
     * gets replica 0 of task 1 instead; racks 1 and 2 get the rest. */
    ck_assert_int_eq (gr_sched_next (s, 0, 1, 1, 0, 0, NOLIMIT, &a1), 1);
    ck_assert_int_eq (a1.index, 0);
    ck_assert_int_eq (gr_sched_next (s, 0, 2, 1, 0, 0, NOLIMIT, &a2), 1);
    ck_assert_int_eq (a2.index, 3);
    ck_assert_int_eq (gr_sched_next (s, 0, 3, 1, 0, 0, NOLIMIT, &a3), 1);
    ck_assert_int_eq (a3.index, 1);
    ck_assert_int_eq (gr_sched_next (s, 0, 4, 1, 0, 0, NOLIMIT, &a4), 1);
    ck_assert_int_eq (a4.index, 2);
    /* Rack 0 is full for both tasks: nothing more for rank 1. */
    ck_assert_int_eq (gr_sched_next (s, 0, 1, 1, 0, 0, NOLIMIT, &x), 0);
    ck_assert_int_eq (gr_sched_next (s, 0, 3, 1, 0, 0, NOLIMIT, &a5), 1);
    ck_assert_int_eq (a5.index, 4);
    /* Replica 1 of task 0 fails in rack 1: its retry may only go back to
     * rack 1, since the others hold its siblings (running or done). */
    gr_result_rec_t r = result (&a3, 1, 0, 0);
    ck_assert_int_eq (gr_sched_complete (s, 1, &r, &o), 0);
    ck_assert_int_eq (o.kind, GR_OUTCOME_RETRY);
    r = result (&a1, 0, 0, 0);
    ck_assert_int_eq (gr_sched_complete (s, 1, &r, &o), 0);
    ck_assert_int_eq (o.kind, GR_OUTCOME_DONE);
    ck_assert_int_eq (gr_sched_next (s, 2, 1, 1, 0, 0, NOLIMIT, &x), 0);
    ck_assert_int_eq (gr_sched_next (s, 2, 4, 1, 0, 0, NOLIMIT, &x), 1);
    ck_assert_int_eq (x.index, 5); /* task 1's last replica, not the retry */
    ck_assert_int_eq (gr_sched_next (s, 2, 3, 1, 0, 0, NOLIMIT, &x), 1);
    ck_assert_int_eq (x.index, 1);
    ck_assert_int_eq (x.attempt, 2);
    gr_sched_destroy (s);
    gr_spec_destroy (spec);
}
END_TEST

START_TEST (test_retry_away)
{
    gr_spec_t *spec = parse ("name: t\n"
                             "tasks:\n"
                             "  - name: a\n"
                             "    command: [echo]\n"
                             "    retry_away: node\n"
                             "    retries: {max: 3, backoff: 0, jitter: 0}\n");
    gr_sched_t *s = gr_sched_create (spec, 1);
    gr_assign_rec_t a, x;
    gr_outcome_t o;

    ck_assert_int_eq (gr_sched_set_placement (s, 5, doms5, NULL), 0);
    ck_assert_int_eq (gr_sched_next (s, 0, 1, 1, 0, 0, NOLIMIT, &a), 1);
    gr_result_rec_t r = result (&a, 1, 0, 0);
    ck_assert_int_eq (gr_sched_complete (s, 1, &r, &o), 0);
    ck_assert_int_eq (o.kind, GR_OUTCOME_RETRY);
    /* Not back on node 0 while others may take it... */
    ck_assert_int_eq (gr_sched_next (s, 2, 1, 1, 0, 0, NOLIMIT, &x), 0);
    ck_assert_int_eq (gr_sched_next (s, 2, 2, 1, 0, 0, NOLIMIT, &x), 1);
    ck_assert_int_eq (x.attempt, 2);
    r = result (&x, 1, 0, 0);
    ck_assert_int_eq (gr_sched_complete (s, 3, &r, &o), 0);
    ck_assert_int_eq (o.kind, GR_OUTCOME_RETRY);
    /* ...but when every other rank is unusable, it runs where it can. */
    gr_sched_set_usable (s, 1, false);
    gr_sched_set_usable (s, 3, false);
    gr_sched_set_usable (s, 4, false);
    ck_assert_int_eq (gr_sched_next (s, 4, 2, 1, 0, 0, NOLIMIT, &x), 1);
    ck_assert_int_eq (x.attempt, 3);
    gr_sched_destroy (s);
    gr_spec_destroy (spec);
}
END_TEST

START_TEST (test_require_and_unplaceable)
{
    gr_spec_t *spec = parse ("name: t\n"
                             "tasks:\n"
                             "  - name: g\n"
                             "    command: [echo]\n"
                             "    require: {gpu: a100}\n"
                             "  - name: p\n"
                             "    command: [echo]\n"
                             "    replicas: 2\n");
    gr_sched_t *s = gr_sched_create (spec, 1);
    /* Ranks 1 and 2 meet g's require:, 3 and 4 do not; p needs none. */
    uint8_t req[5 * 2] = {0, 1, 1, 1, 1, 1, 0, 1, 0, 1};
    gr_assign_rec_t a, b, x;
    gr_outcome_t o;
    int nfailed = 0;

    ck_assert_int_eq (gr_sched_set_placement (s, 5, doms5, req), 0);
    ck_assert_int_eq (gr_sched_next (s, 0, 1, 1, 0, 0, NOLIMIT, &b), 1);
    ck_assert_int_eq (b.def, 0);
    ck_assert_int_eq (gr_sched_next (s, 0, 3, 1, 0, 0, NOLIMIT, &a), 1);
    ck_assert_int_eq (a.def, 1); /* g is not for rank 3 */
    /* p's second replica waits for another node; when the only other
     * nodes are lost it cannot be placed and fails with a reason. */
    gr_sched_set_usable (s, 1, false);
    gr_sched_set_usable (s, 2, false);
    gr_sched_set_usable (s, 4, false);
    ck_assert_int_eq (gr_sched_next (s, 0, 3, 1, 0, 0, NOLIMIT, &x), 0);
    ck_assert_int_eq (gr_sched_stats (s)->waiting, 1);
    ck_assert_int_eq (gr_sched_fail_unplaceable (s, NULL, NULL), 1);
    ck_assert_int_eq (gr_sched_stats (s)->waiting, 0);
    ck_assert_int_eq (gr_sched_stats (s)->failed, 1);
    const gr_outcome_t *f;
    nfailed = gr_sched_failures (s, &f);
    ck_assert_int_eq (nfailed, 1);
    ck_assert_msg (strstr (f[0].reason, "2 distinct nodes, 1 usable"), "%s", f[0].reason);
    gr_result_rec_t r = result (&a, 0, 0, 0);
    ck_assert_int_eq (gr_sched_complete (s, 1, &r, &o), 0);
    r = result (&b, 0, 0, 0);
    ck_assert_int_eq (gr_sched_complete (s, 1, &r, &o), 0);
    ck_assert (gr_sched_finished (s));
    gr_sched_destroy (s);
    gr_spec_destroy (spec);
}
END_TEST

/* A group: handed out only through its own eligibility mask, moved to the
 * worker of its RANK 0, restarted at once on a failure; preemptions and
 * lost workers do not use up max_restarts, failures do; a replay counts
 * the same; UNPLACED fails it for good. */
START_TEST (test_group_restarts)
{
    const char *yaml = "name: t\n"
                       "tasks:\n"
                       "  - name: g\n"
                       "    kind: group\n"
                       "    ranks: 2\n"
                       "    max_restarts: 1\n"
                       "    command: [train]\n"
                       "  - name: p\n"
                       "    command: [true]\n";
    gr_spec_t *spec = parse (yaml);
    gr_sched_t *s = gr_sched_create (spec, 1);
    const uint8_t only_groups[] = {1, 0}, no_groups[] = {0, 1};
    gr_assign_rec_t a, b;
    gr_outcome_t o;
    gr_result_rec_t r;

    ck_assert_int_eq (gr_sched_next_placed (s, 0, 1, 8, 0, 0, NOLIMIT, no_groups, &b), 1);
    ck_assert_uint_eq (b.def, 1);
    ck_assert_int_eq (gr_sched_next_placed (s, 0, 1, 8, 0, 0, NOLIMIT, no_groups, &b), 0);
    ck_assert_int_eq (gr_sched_next_placed (s, 0, -1, 8, 0, 0, NOLIMIT, only_groups, &a), 1);
    ck_assert_uint_eq (a.def, 0);
    ck_assert_int_eq (gr_sched_set_worker (s, a.id, 3), 0);
    ck_assert_int_eq (gr_sched_set_worker (s, a.id + 1, 3), -1);
    /* Preempted (KILLED): requeued, not a failure. */
    r = result (&a, 0, 0, GR_RES_KILLED);
    ck_assert_int_eq (gr_sched_complete (s, 1, &r, &o), 0);
    ck_assert_int_eq (o.kind, GR_OUTCOME_REQUEUED);
    ck_assert_int_eq (o.worker, 3);
    ck_assert_int_eq (gr_sched_next_placed (s, 1, -1, 8, 0, 0, NOLIMIT, only_groups, &a), 1);
    ck_assert_uint_eq (a.attempt, 2);
    /* First failure: a restart, at once. */
    r = result (&a, 3, 0, 0);
    ck_assert_int_eq (gr_sched_complete (s, 2, &r, &o), 0);
    ck_assert_int_eq (o.kind, GR_OUTCOME_RETRY);
    ck_assert_double_eq (o.delay, 0);
    ck_assert_int_eq (gr_sched_next_placed (s, 2, -1, 8, 0, 0, NOLIMIT, only_groups, &a), 1);
    ck_assert_uint_eq (a.attempt, 3);
    /* A crash by signal is a failure like any: the second one ends it. */
    r = result (&a, -1, 11, 0);
    ck_assert_int_eq (gr_sched_complete (s, 3, &r, &o), 0);
    ck_assert_int_eq (o.kind, GR_OUTCOME_FAILED);
    ck_assert_uint_eq (gr_sched_stats (s)->failed, 1);
    gr_sched_destroy (s);

    /* The same history replayed from a journal: one failure so far, so
     * the group may restart once more. */
    s = gr_sched_create (spec, 1);
    gr_jstart_t st = {.key = a.key, .index = 0, .def = 0, .attempt = 1};
    gr_jend_t en = {.key = a.key, .index = 0, .def = 0, .attempt = 1, .exit_code = -1,
                    .flags = GR_RES_KILLED, .outcome = GR_JOUT_REQUEUED};
    ck_assert_int_eq (gr_sched_restore_start (s, &st, 3), 0);
    ck_assert_int_eq (gr_sched_restore_end (s, &en, 3), 0);
    st.attempt = en.attempt = 2;
    en = (gr_jend_t){.key = a.key, .def = 0, .attempt = 2, .exit_code = 3,
                     .outcome = GR_JOUT_RETRY};
    ck_assert_int_eq (gr_sched_restore_start (s, &st, 3), 0);
    ck_assert_int_eq (gr_sched_restore_end (s, &en, 3), 0);
    ck_assert_int_eq (gr_sched_restore_finish (s, false), 0);
    ck_assert_int_eq (gr_sched_next_placed (s, 5, -1, 8, 0, 0, NOLIMIT, only_groups, &a), 1);
    ck_assert_uint_eq (a.attempt, 3);
    r = result (&a, 3, 0, 0);
    ck_assert_int_eq (gr_sched_complete (s, 6, &r, &o), 0);
    ck_assert_int_eq (o.kind, GR_OUTCOME_FAILED);
    gr_sched_destroy (s);

    /* No room anywhere: failed for good, without a retry. */
    s = gr_sched_create (spec, 1);
    ck_assert_int_eq (gr_sched_next_placed (s, 0, -1, 8, 0, 0, NOLIMIT, only_groups, &a), 1);
    r = result (&a, 0, 0, GR_RES_UNPLACED);
    ck_assert_int_eq (gr_sched_complete (s, 1, &r, &o), 0);
    ck_assert_int_eq (o.kind, GR_OUTCOME_FAILED);
    ck_assert_str_eq (o.reason, "could not be placed on any usable worker");
    gr_sched_destroy (s);
    gr_spec_destroy (spec);
}
END_TEST

START_TEST (test_quarantine)
{
    gr_quarantine_t p = {.enabled = true, .failures = 3, .window = 10, .cooloff = 5,
                         .level = GR_LEVEL_NODE};
    gr_quar_t *q = gr_quar_create (&p, 2);
    ck_assert_ptr_nonnull (q);
    /* Three failures, but not within 10 s of each other. */
    ck_assert (!gr_quar_fail (q, 0, 0));
    ck_assert (!gr_quar_fail (q, 0, 20));
    ck_assert (!gr_quar_fail (q, 0, 21));
    ck_assert (!gr_quar_active (q, 0));
    /* The third within the window quarantines. */
    ck_assert (gr_quar_fail (q, 0, 22));
    ck_assert (gr_quar_active (q, 0));
    ck_assert (!gr_quar_active (q, 1));
    ck_assert_double_eq (gr_quar_until (q, 0), 27);
    ck_assert_int_eq (gr_quar_count (q), 1);
    ck_assert (!gr_quar_fail (q, 0, 23)); /* not counted while quarantined */
    ck_assert_uint_eq (gr_quar_release (q, 26), SIZE_MAX);
    ck_assert_uint_eq (gr_quar_release (q, 27), 0);
    ck_assert_uint_eq (gr_quar_release (q, 27), SIZE_MAX);
    ck_assert (!gr_quar_active (q, 0));
    /* After the release it takes three new failures. */
    ck_assert (!gr_quar_fail (q, 0, 28));
    ck_assert (!gr_quar_fail (q, 0, 28));
    ck_assert (gr_quar_fail (q, 0, 29));
    ck_assert_uint_eq (gr_quar_times (q, 0), 2);
    ck_assert (!gr_quar_fail (q, 7, 29)); /* out of range: ignored */
    gr_quar_destroy (q);
    p.enabled = false;
    ck_assert_ptr_null (gr_quar_create (&p, 2));
}
END_TEST



int main (void)
{
    Suite *s = suite_create ("sched");
    TCase *tc = tcase_create ("sched");
    tcase_add_test (tc, test_backoff);
    tcase_add_test (tc, test_order_and_fit);
    tcase_add_test (tc, test_retry_then_fail);
    tcase_add_test (tc, test_success_codes);
    tcase_add_test (tc, test_poison);
    tcase_add_test (tc, test_dag);
    tcase_add_test (tc, test_lazy_memory);
    tcase_add_test (tc, test_slowest);
    tcase_add_test (tc, test_restore);
    tcase_add_test (tc, test_requeue);
    tcase_add_test (tc, test_max_duration);
    tcase_add_test (tc, test_spread);
    tcase_add_test (tc, test_retry_away);
    tcase_add_test (tc, test_require_and_unplaceable);
    tcase_add_test (tc, test_quarantine);
    tcase_add_test (tc, test_group_restarts);
    suite_add_tcase (s, tc);
    return gr_check_main (s);
}
