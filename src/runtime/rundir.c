#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "src/common/fs.h"
#include "src/common/units.h"
#include "src/journal/journal.h"
#include "rundir.h"

const char *gr_rundir_file (const char *run_dir, const char *name, char *buf,
                            size_t len)
{
    snprintf (buf, len, "%s/%s", run_dir, name);
    return buf;
}

static bool exists (const char *run_dir, const char *name)
{
    char p[PATH_MAX];
    struct stat st;
    return stat (gr_rundir_file (run_dir, name, p, sizeof (p)), &st) == 0;
}

static const char *hashed_name (uint64_t hash, char *buf, size_t len)
{
    snprintf (buf, len, "spec-%016" PRIx64 ".pack", hash);
    return buf;
}

int gr_rundir_store_spec (const gr_rundir_t *rd, gr_error_t *errp)
{
    char p[PATH_MAX], name[64];
    void *pack = NULL;
    size_t plen;
    int rc;

    if (gr_spec_pack (rd->spec, &pack, &plen) < 0)
        return gr_errprintf (errp, "cannot pack the spec: %s", strerror (errno));
    /* The hashed copy first: a journal names tasks by this spec's keys
     * only once spec.pack says the run uses it. */
    rc = gr_write_file_atomic (gr_rundir_file (rd->path, hashed_name (rd->spec->hash, name,
                                                                      sizeof (name)),
                                               p, sizeof (p)),
                               pack, plen, 0600, errp);
    if (rc == 0)
        rc = gr_write_file_atomic (gr_rundir_file (rd->path, "spec.pack", p, sizeof (p)),
                                   pack, plen, 0600, errp);
    free (pack);
    if (rc < 0)
        return -1;
    return gr_write_file_atomic (gr_rundir_file (rd->path, "spec.yaml", p, sizeof (p)),
                                 rd->spec->text, rd->spec->textlen, 0600, errp);
}

/* RUN/name as a spec.  Errors name the file. */
static int load_pack (const char *run_dir, const char *name, gr_spec_t **specp,
                      gr_error_t *errp)
{
    char p[PATH_MAX];
    char *buf;
    size_t len;
    gr_error_t e;

    gr_rundir_file (run_dir, name, p, sizeof (p));
    if (gr_read_file (p, GR_SPEC_MAX_BYTES + GR_SPEC_MAX_PARAM_FILE, &buf, &len, &e) < 0)
        return gr_errprintf (errp, "%s", e.text);
    int rc = gr_spec_unpack (buf, len, specp, &e);
    free (buf);
    if (rc < 0)
        return gr_errprintf (errp, "the spec stored in '%s' does not load: %s", p, e.text);
    return 0;
}

int gr_rundir_load_spec (const char *run_dir, gr_spec_t **specp, gr_error_t *errp)
{
    return load_pack (run_dir, "spec.pack", specp, errp);
}

static int load_stored (const char *run_dir, gr_spec_t **specp, gr_error_t *errp)
{
    gr_error_t e;
    if (gr_rundir_load_spec (run_dir, specp, &e) < 0)
        return gr_errprintf (errp, "cannot resume '%s': %s", run_dir, e.text);
    return 0;
}

/* Replay with keys: see gr_rundir_replay. */
typedef struct {
    const char *run_dir;
    gr_journal_rec_f fn;
    void *arg;
    bool have_hash;
    uint64_t hash;          /* the spec of the incarnation being replayed */
    const gr_spec_t *known; /* the caller's spec, used when it has that hash */
    const gr_spec_t *spec;  /* the spec of hash: known, or loaded */
    gr_spec_t *loaded;      /* loaded for hash when a keyless batch came */
    gr_expand_t *x;
    void *tasks;            /* the batch with its keys */
    size_t cap;             /* bytes */
    gr_error_t err;
    bool failed;
} keyed_t;

static int keyed_fail (keyed_t *k, int err, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
static int keyed_fail (keyed_t *k, int err, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (k->err.text, sizeof (k->err.text), fmt, ap);
    va_end (ap);
    k->failed = true;
    errno = err;
    return -1;
}

/* The spec whose keys the incarnation's entries have. */
static int keyed_spec (keyed_t *k)
{
    char name[64];
    gr_error_t e;
    gr_spec_t *s = NULL;

    if (k->spec && k->spec->hash == k->hash)
        return 0;
    if (k->known && k->known->hash == k->hash) {
        k->spec = k->known;
        return 0;
    }
    gr_spec_destroy (k->loaded);
    k->spec = k->loaded = NULL;
    if (!k->have_hash)
        return keyed_fail (k, EINVAL, "journal of '%s': task records before the "
                           "first run start", k->run_dir);
    if (load_pack (k->run_dir, hashed_name (k->hash, name, sizeof (name)), &s, &e) < 0) {
        /* A run directory keeps spec.pack too; it may be the one. */
        gr_error_t e2;
        if (load_pack (k->run_dir, "spec.pack", &s, &e2) < 0 || s->hash != k->hash) {
            gr_spec_destroy (s);
            return keyed_fail (k, ENOENT, "the journal of '%s' names tasks of spec "
                               "%016" PRIx64 ", which the run directory no longer "
                               "holds (%s)", k->run_dir, k->hash, e.text);
        }
    }
    k->spec = k->loaded = s;
    return 0;
}

static int keyed_key (keyed_t *k, uint32_t def, uint64_t index, uint64_t *key)
{
    if (def >= k->spec->ntasks || index >= k->spec->tasks[def].count)
        return keyed_fail (k, EINVAL, "the journal of '%s' names task %" PRIu64
                           " of definition %u, which its spec %016" PRIx64
                           " does not have", k->run_dir, index, def, k->hash);
    if (gr_expand_select (k->x, &k->spec->tasks[def], index) < 0)
        return keyed_fail (k, errno, "cannot expand task %" PRIu64 " of '%s': %s",
                           index, k->spec->tasks[def].name, strerror (errno));
    *key = gr_expand_key (k->x);
    return 0;
}

static int keyed_cb (const gr_jrec_t *rec, void *arg)
{
    keyed_t *k = arg;
    bool start = rec->type == GR_JREC_TASK_START;

    if (rec->type == GR_JREC_RUN_START) {
        k->have_hash = true;
        k->hash = rec->run_start.spec_hash;
    }
    if (!((start && rec->start.keyless) || (rec->type == GR_JREC_TASK_END
                                            && rec->end.keyless)))
        return k->fn ? k->fn (rec, k->arg) : 0;
    uint32_t n = start ? rec->start.n : rec->end.n;
    size_t need = (size_t)n * (start ? sizeof (gr_jstart_t) : sizeof (gr_jend_t));
    if (keyed_spec (k) < 0)
        return -1;
    if (need > k->cap) {
        void *t = realloc (k->tasks, need);
        if (!t)
            return keyed_fail (k, ENOMEM, "out of memory replaying the journal");
        k->tasks = t;
        k->cap = need;
    }
    gr_jrec_t copy = *rec;
    if (start) {
        gr_jstart_t *t = k->tasks;
        memcpy (t, rec->start.tasks, need);
        for (uint32_t i = 0; i < n; i++)
            if (keyed_key (k, t[i].def, t[i].index, &t[i].key) < 0)
                return -1;
        copy.start.tasks = t;
        copy.start.keyless = false;
    }
    else {
        gr_jend_t *t = k->tasks;
        memcpy (t, rec->end.tasks, need);
        for (uint32_t i = 0; i < n; i++)
            if (keyed_key (k, t[i].def, t[i].index, &t[i].key) < 0)
                return -1;
        copy.end.tasks = t;
        copy.end.keyless = false;
    }
    return k->fn ? k->fn (&copy, k->arg) : 0;
}

int gr_rundir_replay (const char *run_dir, const gr_spec_t *spec, gr_journal_rec_f fn,
                      void *arg, gr_journal_info_t *info, gr_error_t *errp)
{
    char path[PATH_MAX];
    keyed_t k = {.run_dir = run_dir, .known = spec, .fn = fn, .arg = arg};

    if (!(k.x = gr_expand_create ()))
        return gr_errprintf (errp, "out of memory");
    int rc = gr_journal_replay (gr_rundir_file (run_dir, "journal", path, sizeof (path)),
                                keyed_cb, &k, info, errp);
    if (rc < 0 && k.failed) {
        int saved = errno;
        gr_errprintf (errp, "%s", k.err.text);
        errno = saved;
    }
    gr_expand_destroy (k.x);
    gr_spec_destroy (k.loaded);
    free (k.tasks);
    return rc;
}

static void add (char *buf, size_t len, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
static void add (char *buf, size_t len, const char *fmt, ...)
{
    size_t n = strlen (buf);
    if (n + 1 >= len)
        return;
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (buf + n, len - n, fmt, ap);
    va_end (ap);
}

static bool str_eq (const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp (a, b) == 0);
}

static bool strv_eq (char **a, char **b)
{
    if (!a || !b)
        return a == b;
    for (; *a && *b; a++, b++) {
        if (strcmp (*a, *b) != 0)
            return false;
    }
    return *a == *b;
}

/* Parameter combinations: count includes the replicas. */
static uint64_t combos (const gr_taskdef_t *d)
{
    return d->count / (d->replicas > 1 ? d->replicas : 1);
}

static bool params_eq (const gr_taskdef_t *a, const gr_taskdef_t *b)
{
    if (a->nparams != b->nparams || a->zip != b->zip || combos (a) != combos (b))
        return false;
    for (size_t i = 0; i < a->nparams; i++) {
        const gr_param_t *p = &a->params[i], *q = &b->params[i];
        if (strcmp (p->name, q->name) != 0 || p->kind != q->kind || p->count != q->count)
            return false;
        if (p->kind == GR_PARAM_RANGE) {
            if (p->from != q->from || p->step != q->step)
                return false;
        }
        else {
            for (uint64_t j = 0; j < p->count; j++) {
                if (strcmp (p->values[j], q->values[j]) != 0)
                    return false;
            }
        }
    }
    return true;
}

static gr_level_t default_spread (const gr_taskdef_t *d)
{
    return d->replicas > 1 ? GR_LEVEL_NODE : GR_LEVEL_NONE;
}

/* Whether every value of a is one of b's.  Long lists (only a hostile
 * spec has them) are compared in order, to keep this linear. */
static bool values_in (const gr_label_match_t *a, const gr_label_match_t *b)
{
    bool ordered = a->nvalues > 64 || b->nvalues > 64;

    for (size_t i = 0; i < a->nvalues; i++) {
        bool found = false;
        if (ordered)
            found = i < b->nvalues && strcmp (a->values[i], b->values[i]) == 0;
        for (size_t k = 0; !ordered && !found && k < b->nvalues; k++)
            found = strcmp (a->values[i], b->values[k]) == 0;
        if (!found)
            return false;
    }
    return true;
}

/* require: and prefer: are sets of labels, each a set of values. */
static bool labels_eq (const gr_label_match_t *a, size_t na, const gr_label_match_t *b,
                       size_t nb)
{
    bool ordered = na > 64;

    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++) {
        const gr_label_match_t *m = NULL;
        if (ordered && strcmp (a[i].key, b[i].key) == 0)
            m = &b[i];
        for (size_t k = 0; !ordered && !m && k < nb; k++) {
            if (strcmp (a[i].key, b[k].key) == 0)
                m = &b[k];
        }
        if (!m || !values_in (&a[i], m) || !values_in (m, &a[i]))
            return false;
    }
    return true;
}

static bool quarantine_eq (const gr_quarantine_t *a, const gr_quarantine_t *b)
{
    if (!a->enabled || !b->enabled)
        return a->enabled == b->enabled;
    return a->failures == b->failures && a->window == b->window && a->cooloff == b->cooloff
           && a->level == b->level;
}

static const char *describe_quarantine (const gr_quarantine_t *q, char *buf, size_t len)
{
    char w[32], c[32];

    if (!q->enabled)
        return "off";
    snprintf (buf, len, "%" PRIu32 " failures in %s per %s, cooloff %s", q->failures,
              gr_fmt_duration (q->window, w, sizeof (w)), gr_level_name (q->level),
              gr_fmt_duration (q->cooloff, c, sizeof (c)));
    return buf;
}

void gr_spec_describe_changes (const gr_spec_t *a, const gr_spec_t *b, char *buf,
                               size_t len)
{
    buf[0] = '\0';
    if (strcmp (a->name, b->name) != 0)
        add (buf, len, "\n  job name: '%s' became '%s'", a->name, b->name);
    if (!quarantine_eq (&a->quarantine, &b->quarantine)) {
        char qa[128], qb[128];
        add (buf, len, "\n  quarantine: became %s (was %s)",
             describe_quarantine (&b->quarantine, qb, sizeof (qb)),
             describe_quarantine (&a->quarantine, qa, sizeof (qa)));
    }
    for (size_t i = 0; i < a->ntasks; i++) {
        const gr_taskdef_t *o = &a->tasks[i];
        const gr_taskdef_t *n = gr_spec_find (b, o->name);
        if (!n) {
            add (buf, len, "\n  task '%s' was removed", o->name);
            continue;
        }
        if (!strv_eq (o->argv, n->argv) || !str_eq (o->shell, n->shell)
            || o->builtin != n->builtin || o->noop_duration != n->noop_duration)
            add (buf, len, "\n  task '%s': its command changed", o->name);
        if (!params_eq (o, n))
            add (buf, len, "\n  task '%s': its params changed (%llu tasks, was %llu)",
                 o->name, (unsigned long long)n->count, (unsigned long long)o->count);
        if (o->replicas != n->replicas)
            add (buf, len, "\n  task '%s': its replicas changed (%" PRIu32 ", was %" PRIu32
                 "; %llu tasks, was %llu)",
                 o->name, n->replicas, o->replicas, (unsigned long long)n->count,
                 (unsigned long long)o->count);
        {
            /* Which placement keys changed, by name.  A spread that only
             * followed replicas to or from its default is no news. */
            char keys[96] = "";
            if (o->spread != n->spread
                && !(o->spread == default_spread (o) && n->spread == default_spread (n)))
                add (keys, sizeof (keys), ", spread");
            if (o->retry_away != n->retry_away)
                add (keys, sizeof (keys), ", retry_away");
            if (!labels_eq (o->require, o->nrequire, n->require, n->nrequire))
                add (keys, sizeof (keys), ", require");
            if (!labels_eq (o->prefer, o->nprefer, n->prefer, n->nprefer))
                add (keys, sizeof (keys), ", prefer");
            if (!str_eq (o->locality, n->locality))
                add (keys, sizeof (keys), ", locality");
            if (keys[0])
                add (buf, len, "\n  task '%s': its placement changed (%s)", o->name,
                     keys + 2);
        }
        if (!strv_eq (o->env, n->env) || !str_eq (o->cwd, n->cwd))
            add (buf, len, "\n  task '%s': its env or cwd changed", o->name);
        if (o->cpus != n->cpus || o->gpus != n->gpus || o->mem != n->mem)
            add (buf, len, "\n  task '%s': its resources changed", o->name);
        if (o->timeout != n->timeout || o->kill_grace != n->kill_grace
            || memcmp (&o->retry, &n->retry, sizeof (o->retry)) != 0
            || o->nsuccess != n->nsuccess
            || (o->nsuccess && memcmp (o->success, n->success, o->nsuccess * sizeof (int))))
            add (buf, len, "\n  task '%s': its timeout, retries or success codes changed",
                 o->name);
        if (o->nafter != n->nafter || o->out_mode != n->out_mode
            || o->err_mode != n->err_mode || !str_eq (o->out_path, n->out_path)
            || !str_eq (o->err_path, n->err_path) || o->max_output != n->max_output)
            add (buf, len, "\n  task '%s': its after: or output settings changed", o->name);
        if (o->group != n->group || o->ranks != n->ranks
            || o->ranks_per_node != n->ranks_per_node || o->group_grace != n->group_grace
            || !str_eq (o->ckpt_dir, n->ckpt_dir))
            add (buf, len, "\n  task '%s': its group settings changed (kind, ranks, "
                 "ranks_per_node, grace or checkpoint_dir)", o->name);
    }
    for (size_t i = 0; i < b->ntasks; i++) {
        if (!gr_spec_find (a, b->tasks[i].name))
            add (buf, len, "\n  task '%s' was added", b->tasks[i].name);
    }
    if (!buf[0])
        add (buf, len, "\n  (the job-level settings, or the contents of a param file)");
}

char *gr_rundir_default (const gr_spec_t *spec)
{
    char buf[PATH_MAX];
    time_t t = time (NULL);
    struct tm tm;
    localtime_r (&t, &tm);
    snprintf (buf, sizeof (buf), "gridrun-%s-%04d%02d%02d-%02d%02d%02d", spec->name,
              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
              tm.tm_sec);
    return gr_abspath (buf);
}

int gr_rundir_prepare (const gr_run_opts_t *o, gr_rundir_t *rd, gr_error_t *errp)
{
    gr_spec_t *given = NULL, *stored = NULL;
    char p[PATH_MAX];
    int code = GR_EXIT_USAGE;

    memset (rd, 0, sizeof (*rd));
    if (o->spec_path && gr_spec_load (o->spec_path, &given, errp) < 0)
        return GR_EXIT_USAGE;
    if (o->run_dir)
        rd->path = gr_abspath (o->run_dir);
    else if (given)
        rd->path = gr_rundir_default (given);
    else {
        gr_errprintf (errp, "give a job spec, or --run-dir of a run to resume");
        goto error;
    }
    if (!rd->path) {
        gr_errprintf (errp, "cannot resolve the run directory: %s", strerror (errno));
        goto error;
    }
    /* Every file of the run lives under it, with names of at most 64
     * bytes, so bounding it here keeps every derived path whole. */
    if (strlen (rd->path) > PATH_MAX - 128) {
        errno = ENAMETOOLONG;
        gr_errprintf (errp, "run directory path is too long (%zu bytes; at most %d)",
                      strlen (rd->path), PATH_MAX - 128);
        goto error;
    }

    if (exists (rd->path, "journal")) {
        if (o->no_journal) {
            gr_errprintf (errp, "run directory '%s' holds a run; --no-journal runs "
                          "need a new directory", rd->path);
            goto error;
        }
        if (load_stored (rd->path, &stored, errp) < 0)
            goto error;
        rd->resume = true;
        if (!given) {
            rd->spec = stored;
            stored = NULL;
        }
        else if (given->hash == stored->hash) {
            rd->spec = given;
            given = NULL;
        }
        else if (!o->force) {
            char changes[1024];
            gr_spec_describe_changes (stored, given, changes, sizeof (changes));
            gr_errprintf (errp, "'%s' is not the spec run '%s' was started with; what "
                          "changed:%s\nResume with the original spec, or give --force "
                          "to go on with this one (tasks are matched by key: finished "
                          "ones are kept, new ones run)", o->spec_path, rd->path, changes);
            goto error;
        }
        else {
            rd->spec = given;
            rd->spec_changed = true;
            given = NULL;
        }
        gr_spec_destroy (stored);
        stored = NULL;
        /* A stale outcome must not be mistaken for this run's. */
        unlink (gr_rundir_file (rd->path, "exit_status", p, sizeof (p)));
        if (rd->spec_changed && gr_rundir_store_spec (rd, errp) < 0)
            goto write_error;
        return 0;
    }
    if (!given) {
        gr_errprintf (errp, "'%s' holds no run to resume (no journal); give a job spec",
                      rd->path);
        goto error;
    }
    if (exists (rd->path, "spec.yaml")) {
        gr_errprintf (errp, "run directory '%s' already holds a run that cannot be "
                      "resumed (it has no journal); give a new --run-dir", rd->path);
        goto error;
    }
    rd->spec = given;
    given = NULL;
    if (gr_mkdir_p (rd->path, 0700, errp) < 0)
        goto write_error;
    if (chmod (rd->path, 0700) < 0) {
        gr_errprintf (errp, "cannot set the mode of '%s': %s", rd->path, strerror (errno));
        goto error;
    }
    if (gr_mkdir_p (gr_rundir_file (rd->path, "out", p, sizeof (p)), 0700, errp) < 0
        || gr_rundir_store_spec (rd, errp) < 0) {
        gr_rundir_abandon (rd);
        goto write_error;
    }
    return 0;
write_error:
    if (gr_rundir_io_errno (errno)) {
        gr_error_t e;
        memcpy (&e, errp, sizeof (e));
        gr_errprintf (errp, "%s; the run directory '%s' cannot be written: free space on its "
                      "file system (or give another --run-dir) and run the same command again",
                      e.text, rd->path);
        code = GR_EXIT_IO;
    }
error:
    gr_spec_destroy (given);
    gr_spec_destroy (stored);
    gr_rundir_release (rd);
    return code;
}

bool gr_rundir_io_errno (int e)
{
    return e == ENOSPC || e == EDQUOT || e == EIO || e == EROFS || e == EFBIG;
}

void gr_rundir_abandon (const gr_rundir_t *rd)
{
    char p[PATH_MAX];
    int saved = errno;

    if (!exists (rd->path, "journal")) {
        char name[64];
        unlink (gr_rundir_file (rd->path, "spec.yaml", p, sizeof (p)));
        unlink (gr_rundir_file (rd->path, "spec.pack", p, sizeof (p)));
        unlink (gr_rundir_file (rd->path, hashed_name (rd->spec->hash, name, sizeof (name)),
                                p, sizeof (p)));
    }
    errno = saved;
}

int gr_rundir_reserve (const char *run_dir)
{
    char p[PATH_MAX];
    int fd, rc;

    fd = open (gr_rundir_file (run_dir, ".reserve", p, sizeof (p)),
               O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    /* Allocated, not sparse: the blocks are the point. */
    rc = posix_fallocate (fd, 0, GR_RUNDIR_RESERVE);
    close (fd);
    if (rc != 0) {
        unlink (p);
        errno = rc;
        return -1;
    }
    return 0;
}

void gr_rundir_unreserve (const char *run_dir)
{
    char p[PATH_MAX];
    int saved = errno;

    unlink (gr_rundir_file (run_dir, ".reserve", p, sizeof (p)));
    errno = saved;
}

void gr_rundir_release (gr_rundir_t *rd)
{
    int saved = errno;
    free (rd->path);
    gr_spec_destroy (rd->spec);
    memset (rd, 0, sizeof (*rd));
    errno = saved;
}

bool gr_rundir_exit_status (const char *run_dir, int *code)
{
    char path[PATH_MAX], *buf, *end;
    size_t len;
    if (gr_read_file (gr_rundir_file (run_dir, "exit_status", path, sizeof (path)), 64,
                      &buf, &len, NULL) < 0)
        return false;
    long v = strtol (buf, &end, 10);
    bool ok = end != buf && *end == '\n';
    free (buf);
    if (ok)
        *code = (int)v;
    return ok;
}

long gr_rundir_master_pid (const char *run_dir, bool *local)
{
    char path[PATH_MAX], *buf, host[64], mhost[64] = "";
    size_t len;
    long pid = 0;
    *local = false;
    if (gr_read_file (gr_rundir_file (run_dir, "master.info", path, sizeof (path)), 4096,
                      &buf, &len, NULL) < 0)
        return 0;
    if (sscanf (buf, "pid %ld\nhost %63s", &pid, mhost) != 2)
        pid = 0;
    free (buf);
    if (gethostname (host, sizeof (host)) == 0) {
        host[sizeof (host) - 1] = '\0';
        *local = strcmp (host, mhost) == 0;
    }
    return pid;
}
