/* The job spec: a YAML file parsed through libyaml into gr_spec_t, validated
 * before any work starts, and expanded lazily into tasks.
 *
 * Nothing else in gridrun includes <yaml.h>: this module turns libyaml's
 * errors into gr_error_t text with file:line:col and a hint.
 *
 * The full format is documented in doc/gridrun-jobspec.5.  In short:
 *
 *   name: sweep                      # job name (required)
 *   defaults: { ...task keys... }    # applied to every task
 *   tasks:
 *     - name: sim                    # [A-Za-z0-9_.-]+, unique
 *       command: [./sim, --x, "{x}"] # argv list; or shell: "..."; or builtin: noop
 *       params: { x: [1, 2], y: {range: [0, 1, 0.25]}, z: {file: seeds.txt} }
 *       combine: product | zip
 *       env: { KEY: "value {x}" }
 *       cwd: "work/{x}"
 *       resources: { cpus: 1, gpus: 0, mem: 2G }
 *       timeout: 10m
 *       kill_grace: 5s
 *       retries: 3 | { max: 3, backoff: 1s, backoff_max: 5m, jitter: 0.5, crash_limit: 2 }
 *       success: [0]
 *       after: [prep]
 *       stdout: capture | discard | "path/{x}.out"
 *       stderr: capture | discard | stdout | "path"
 *       max_output: 16M              # captured output kept per stream and attempt
 *       replicas: 3                  # run each task 3 times ...
 *       spread: rack                 # ... on 3 distinct racks (node|rack|zone)
 *       retry_away: node             # a retry avoids the failed attempt's node
 *       require: { gpu: [a100, h100], zone: east }   # labels a node must have
 *       prefer: { cost: low }        # labels to prefer when they have room
 *       locality: era5               # prefer nodes whose data: label lists era5
 *     - name: train                  # a group: one multi-process program
 *       kind: group                  # (see doc/training.md)
 *       ranks: 4                     # processes, started together
 *       ranks_per_node: 2            # at most 2 on one node (default: no limit)
 *       cpus_per_rank: 2             # and gpus_per_rank: 1
 *       command: [python3, train.py] # gets RANK, WORLD_SIZE, MASTER_ADDR ...
 *       checkpoint_dir: ckpt/{lr}    # GRIDRUN_CKPT_DIR (default RUN/ckpt/NAME)
 *       max_restarts: 3              # restarts of the whole group on a failure
 *       grace: 2m                    # preemption: signal, then this long
 *   quarantine: { failures: 5, window: 10m, cooloff: 10m, level: node }
 *
 * Ownership: gr_spec_t and everything reachable from it belong to the spec
 * and are freed by gr_spec_destroy().  All structures are read-only after
 * gr_spec_load()/gr_spec_unpack() return.
 */
#ifndef GR_SPEC_SPEC_H
#define GR_SPEC_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/common/error.h"

/* Limits that keep hostile specs from exhausting memory.  Each is
 * documented, with its message, in gridrun-jobspec(5) under LIMITS. */
#define GR_SPEC_MAX_BYTES (16u * 1024 * 1024)  /* the spec file itself */
#define GR_SPEC_MAX_TASKDEFS 10000
#define GR_SPEC_MAX_PARAMS 64                  /* per task */
#define GR_SPEC_MAX_ARGV 4096
#define GR_SPEC_MAX_STRING (128u * 1024)       /* one expanded string */
#define GR_SPEC_MAX_PARAM_FILE (256u * 1024 * 1024)
/* Values of one file: param (a list written in the YAML is bounded by
 * the million YAML values a spec may hold). */
#define GR_SPEC_MAX_VALUES (16u * 1024 * 1024)
/* Tasks of a whole spec, replicas included: the master numbers the tasks
 * that have had an attempt in 32 bits (gr_sched's rows). */
#define GR_SPEC_MAX_TASKS UINT64_C (4294967295)
/* What Linux lets one exec take, whatever the stack limit: one argument
 * or environment string (MAX_ARG_STRLEN, 32 pages of 4 KiB, less its
 * NUL), and all of them with their pointers (3/4 of the kernel's 8 MiB
 * _STK_LIM; the real limit, ARG_MAX, is often less and is checked again
 * when a task starts).  Text of a command that no substitution changes
 * is held to these when the spec is read. */
#define GR_SPEC_MAX_ARG (128u * 1024 - 1)
#define GR_SPEC_MAX_COMMAND (6u * 1024 * 1024)

/* A position in the spec file, 1-based. */
typedef struct gr_mark {
    int line;
    int col;
} gr_mark_t;

typedef enum {
    GR_PARAM_LIST = 0,  /* explicit values: [a, b, c] */
    GR_PARAM_RANGE = 1, /* {range: [from, to, step]}, inclusive */
    GR_PARAM_FILE = 2,  /* {file: path}: one value a line, blank lines skipped */
} gr_param_kind_t;

typedef struct gr_param {
    char *name;
    gr_param_kind_t kind;
    uint64_t count;        /* number of values */
    char **values;         /* LIST and FILE: count strings */
    /* RANGE: value i is from + i * step.  When from, to and step are all
     * integers, integral is true and values print as integers ("7");
     * otherwise they print with %.12g so 0.1 + 2 * 0.1 prints "0.3". */
    bool integral;
    int64_t ifrom, istep;
    double from, to, step;
    gr_mark_t mark;
} gr_param_t;

typedef enum {
    GR_OUT_CAPTURE = 0, /* into the run directory's output log (default) */
    GR_OUT_DISCARD = 1, /* /dev/null */
    GR_OUT_FILE = 2,    /* path template, relative to the task's cwd */
    GR_OUT_STDOUT = 3,  /* stderr only: merged into stdout */
} gr_out_mode_t;

typedef enum {
    GR_BUILTIN_NONE = 0,
    GR_BUILTIN_NOOP = 1, /* no process; succeeds after noop_duration */
} gr_builtin_t;

typedef struct gr_retry {
    uint32_t max;         /* retries after the first attempt (default 0) */
    double backoff;       /* first delay, seconds (default 1) */
    double backoff_max;   /* cap on the delay, seconds (default 300) */
    double jitter;        /* 0..1: fraction of the delay randomized (default 0.5) */
    uint32_t crash_limit; /* crashes (signals not sent by gridrun) before the
                             task is poison and never retried (default 3) */
} gr_retry_t;

/* Failure-domain levels a spec can name; the same numbering as topo's
 * gr_dom_level_t (zone 0, rack 1, node 2). */
typedef enum {
    GR_LEVEL_NONE = -1,
    GR_LEVEL_ZONE = 0,
    GR_LEVEL_RACK = 1,
    GR_LEVEL_NODE = 2,
} gr_level_t;

/* "zone", "rack", "node" or "none". */
const char *gr_level_name (gr_level_t l);

/* One label condition of require: or prefer:, e.g. gpu: [a100, h100]: a
 * node matches when its label key has one of the values.  The keys zone,
 * rack and node match the names of the node's domains. */
typedef struct gr_label_match {
    char *key;
    char **values;        /* nvalues strings (>= 1) */
    size_t nvalues;
    gr_mark_t mark;       /* of the key */
} gr_label_match_t;

typedef struct gr_taskdef {
    uint32_t id;          /* index into spec->tasks */
    char *name;
    gr_mark_t mark;       /* of the task's mapping */

    /* Exactly one of argv, shell and builtin is set. */
    char **argv;          /* NULL-terminated templates */
    size_t argc;
    char *shell;          /* template run as /bin/sh -c; values are quoted */
    gr_builtin_t builtin;
    double noop_duration; /* seconds, builtin noop only */

    char **env;           /* NULL-terminated "KEY=template" */
    size_t nenv;
    char *cwd;            /* template, or NULL for the worker's cwd */

    gr_param_t *params;
    size_t nparams;
    bool zip;             /* false: cartesian product (first param slowest) */
    uint64_t count;       /* tasks this definition expands to (>= 1),
                             replicas included: params * replicas */

    uint32_t cpus;        /* default 1 */
    uint32_t gpus;        /* default 0 */
    uint64_t mem;         /* bytes, default 0 (not accounted) */
    gr_mark_t resources_mark;

    double timeout;       /* seconds, 0 = none (default) */
    double kill_grace;    /* seconds between SIGTERM and SIGKILL (default 10) */
    gr_retry_t retry;
    int *success;         /* exit codes that mean success (default {0}) */
    size_t nsuccess;

    uint32_t *after;      /* ids of tasks that must all end first */
    size_t nafter;

    gr_out_mode_t out_mode, err_mode;
    char *out_path;       /* template, GR_OUT_FILE only */
    char *err_path;
    uint64_t max_output;  /* bytes of captured output kept per stream and
                             attempt (max_output:); 0: not given, the run's
                             default applies */

    /* Placement.  Task index i of the definition is replica i % replicas
     * of the parameter combination i / replicas. */
    uint32_t replicas;    /* default 1; at most GR_SPEC_MAX_REPLICAS */
    gr_level_t spread;    /* replicas on distinct domains of this level:
                             default node when replicas > 1, else NONE */
    gr_level_t retry_away;/* a retry avoids the failed attempt's domain of
                             this level when another has room; default NONE */
    gr_label_match_t *require; /* all must match; hard */
    size_t nrequire;
    gr_label_match_t *prefer;  /* soft: such nodes get the tasks first */
    size_t nprefer;
    char *locality;       /* data set name: prefer nodes whose "data" label
                             lists it (comma-separated); NULL if none */
    gr_mark_t place_mark; /* of replicas:, else require:, else the task */

    /* kind: group.  The task is one program of `ranks` processes started
     * together (gang placement) with the torchrun environment; cpus and
     * gpus above are per process (cpus_per_rank, gpus_per_rank), and
     * retry.max is max_restarts, with no backoff and no poison limit. */
    bool group;
    uint32_t ranks;           /* processes (1 .. GR_SPEC_MAX_RANKS) */
    uint32_t ranks_per_node;  /* at most this many on one node; 0: no limit */
    double group_grace;       /* on preemption: the preemption signal, then
                                 this long before SIGTERM; < 0: the job's
                                 grace */
    char *ckpt_dir;           /* template of GRIDRUN_CKPT_DIR; NULL:
                                 RUN/ckpt/NAME */
    gr_mark_t group_mark;     /* of kind: */
} gr_taskdef_t;

#define GR_SPEC_MAX_RANKS 65536

#define GR_SPEC_MAX_REPLICAS 64

/* Quarantine (job key quarantine:): a domain of `level` in which tasks
 * fail `failures` times within `window` seconds gets no new work for
 * `cooloff` seconds.  Off unless the spec asks for it. */
typedef struct gr_quarantine {
    bool enabled;
    uint32_t failures;    /* default 5 */
    double window;        /* default 600 */
    double cooloff;       /* default 600 */
    gr_level_t level;     /* default node */
} gr_quarantine_t;

typedef struct gr_spec {
    char *path;           /* as given to gr_spec_load */
    char *name;           /* job name */
    gr_taskdef_t *tasks;
    size_t ntasks;
    uint64_t total;       /* sum of counts, saturating at UINT64_MAX */
    uint64_t hash;        /* run identity: hash of the normalized spec */
    double grace;         /* drain grace, seconds (job key grace:, default 60) */
    gr_quarantine_t quarantine;

    /* Source text and every file the spec read, so that gr_spec_pack() can
     * ship exactly the same input to other ranks. */
    char *text;
    size_t textlen;
    struct gr_spec_file *files;
    size_t nfiles;
} gr_spec_t;

typedef struct gr_spec_file {
    char *path;           /* as resolved when read */
    char *data;
    size_t len;
} gr_spec_file_t;

/* Parse and validate the spec at path.  On error, returns -1 and errp says
 * "FILE:LINE:COL: what is wrong; what to do". */
int gr_spec_load (const char *path, gr_spec_t **specp, gr_error_t *errp);

/* Same, from memory.  name is used in messages and to resolve relative
 * param files (its directory).  files, when not NULL, supplies the content
 * of param files instead of reading them (see gr_spec_pack). */
int gr_spec_parse (const char *text, size_t len, const char *name,
                   const gr_spec_file_t *files, size_t nfiles,
                   gr_spec_t **specp, gr_error_t *errp);

void gr_spec_destroy (gr_spec_t *spec);

/* Serialize the spec's inputs (text and files) into one malloc'd buffer
 * that the caller frees; gr_spec_unpack() parses it back to an identical
 * spec on another rank. */
int gr_spec_pack (const gr_spec_t *spec, void **bufp, size_t *lenp);
int gr_spec_unpack (const void *buf, size_t len, gr_spec_t **specp,
                    gr_error_t *errp);

/* Whether exit code is one of d's success: codes. */
bool gr_spec_success (const gr_taskdef_t *d, int exit_code);

/* Look up a task definition by name; NULL if none. */
const gr_taskdef_t *gr_spec_find (const gr_spec_t *spec, const char *name);

/* Check that every task fits a worker with the given capacity (mem 0 means
 * unknown and is not checked).  The error names the task's resources line. */
int gr_spec_check_resources (const gr_spec_t *spec, uint32_t max_cpus,
                             uint32_t max_gpus, uint64_t max_mem,
                             gr_error_t *errp);

/* Expansion of one task of a definition.  A gr_expand_t is scratch space
 * reused from task to task so the hot path does not allocate; pointers it
 * returns stay valid until its next gr_expand_* call. */
typedef struct gr_expand gr_expand_t;

gr_expand_t *gr_expand_create (void);
void gr_expand_destroy (gr_expand_t *x);

/* Select task `index` (0 <= index < def->count) of def and compute its
 * parameter values.  With product, the last parameter varies fastest. */
int gr_expand_select (gr_expand_t *x, const gr_taskdef_t *def, uint64_t index);

/* The value of parameter i of the selected task. */
const char *gr_expand_value (const gr_expand_t *x, size_t i);

/* The task key: gr_hash64 over the task name and, in declaration order,
 * each "param=value".  Stable across runs and versions.  Replica r > 0 of
 * a task also hashes "\0" "#replica=" and r in decimal at the end, so
 * replica 0 keeps the key the task has without replicas. */
uint64_t gr_expand_key (const gr_expand_t *x);

/* The replica number (0 .. replicas-1) of the selected task. */
uint32_t gr_expand_replica (const gr_expand_t *x);

/* "name" when the definition has count 1, else "name[index]"; with
 * replicas > 1, "name#r" or "name[index]#r" where index counts parameter
 * combinations (the task index / replicas) and r is the replica. */
const char *gr_expand_name (gr_expand_t *x);

/* "x=1 y=foo" (values with spaces or quotes are double-quoted), or "". */
const char *gr_expand_params_string (gr_expand_t *x);

/* Context for the built-in template variables. */
typedef struct gr_render_ctx {
    const char *run_dir;  /* {run_dir} */
    uint32_t attempt;     /* {attempt}, 1-based */
} gr_render_ctx_t;

/* The rendered command of the selected task.  Templates substitute {param},
 * and the built-ins {task} (definition name), {index}, {attempt} and
 * {run_dir}; "{{" and "}}" are literal braces.  Every substituted argv
 * element stays exactly one argument: nothing is split or interpreted.  In
 * shell: commands each value is single-quoted for /bin/sh. */
typedef struct gr_task_cmd {
    char **argv;          /* NULL-terminated; for shell: {"/bin/sh", "-c", s} */
    char **env;           /* NULL-terminated "KEY=value" additions */
    const char *cwd;      /* NULL when unset */
    const char *out_path; /* GR_OUT_FILE only */
    const char *err_path;
    const char *ckpt_dir; /* groups only: checkpoint_dir, when set */
} gr_task_cmd_t;

int gr_expand_render (gr_expand_t *x, const gr_render_ctx_t *ctx,
                      gr_task_cmd_t *cmd, gr_error_t *errp);

/* Quote s for /bin/sh into a malloc'd string (caller frees). */
char *gr_shell_quote (const char *s);

#endif
