/* Write a known snapshot for t0100-snapshot-tools.sh to read back with
 * h5dump and h5py.  The values here and in that test must agree.
 *
 *   gr-snapwrite [--fixed] PATH
 *
 * --fixed: tell the writer the longest name, params and host, which makes
 * them fixed-length columns (as gridrun's own snapshots have them). */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "src/ckpt/snapshot.h"

int main (int argc, char **argv)
{
    gr_error_t e;
    gr_snap_meta_t meta = {
        .job = "sweep \"A\" \xc3\xa9",
        .spec_hash = 0x0123456789abcdefULL,
        .spec_path = "/home/u/my jobs/job.yaml",
        .run_dir = "/scratch/u/run1",
        .version = "0.1.0",
        .incarnation = 2,
        .started = 1700000000.5,
        .state = "finished",
    };
    const gr_snap_task_t tasks[] = {
        {0x0123456789abcdefULL, "sim[0]", "x=1 y=foo", GR_TASK_DONE, 1, 0, 0, 1.5,
         1024, "node01", 1},
        {UINT64_MAX, "it's \"quoted\"", "msg=two\nlines", GR_TASK_FAILED, 3, 2, 0,
         0.25, 2048, "node 02", 2},
        {1, "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac", "p=a\tb\\c $(x) ;|&", GR_TASK_POISON,
         4, -1, 9, 12.125, INT64_MAX, "n\xc3\xb6" "de3", 3},
        {2, "later", "", GR_TASK_PENDING, 0, -1, 0, 0, 0, "", -1},
        {3, "busy", "n=3", GR_TASK_RUNNING, 1, -1, 0, 0, 0, "node01", 1},
        {4, "again", "n=4", GR_TASK_WAITING, 2, 1, 0, 3.75, 10, "node 02", 2},
    };
    const gr_snap_worker_t workers[] = {
        {0, "node01", 64, 0, 0},
        {1, "node01", 32, 4, 0},
        {2, "node 02", 16, 0, 1},
    };
    const gr_snap_counts_t counts = {
        .total = 6, .done = 1, .failed = 1, .poison = 1, .skipped = 0,
        .running = 1, .waiting = 1, .retries = 5, .timeouts = 1, .crashes = 2,
        .attempts = 11, .duplicates = 3,
    };

    bool fixed = argc == 3 && strcmp (argv[1], "--fixed") == 0;
    if (argc != 2 + fixed) {
        fprintf (stderr, "usage: gr-snapwrite [--fixed] PATH\n");
        return 2;
    }
    for (size_t i = 0; fixed && i < sizeof (tasks) / sizeof (tasks[0]); i++) {
        size_t n = strlen (tasks[i].name), p = strlen (tasks[i].params),
               h = strlen (tasks[i].host);
        meta.sizes_known = true;
        meta.name_max = n > meta.name_max ? n : meta.name_max;
        meta.params_max = p > meta.params_max ? p : meta.params_max;
        meta.host_max = h > meta.host_max ? h : meta.host_max;
    }
    gr_snap_t *s = gr_snap_begin (argv[argc - 1], &meta, &e);
    if (!s
        || gr_snap_add_tasks (s, tasks, sizeof (tasks) / sizeof (tasks[0]), &e) < 0
        || gr_snap_set_workers (s, workers, sizeof (workers) / sizeof (workers[0]),
                                &e) < 0
        || gr_snap_set_counts (s, &counts, &e) < 0
        || gr_snap_add_metric (s, "wall_seconds", 12.5, &e) < 0
        || gr_snap_add_metric (s, "throughput", 0.75, &e) < 0
        || gr_snap_add_metric (s, "busy_seconds", 30, &e) < 0) {
        fprintf (stderr, "gr-snapwrite: %s\n", e.text);
        gr_snap_abort (s);
        return 1;
    }
    if (gr_snap_commit (s, &e) < 0) {
        fprintf (stderr, "gr-snapwrite: %s\n", e.text);
        return 1;
    }
    return 0;
}
