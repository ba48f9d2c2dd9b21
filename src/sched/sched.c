#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/common/hash.h"
#include "src/exec/exec.h"
#include "sched.h"

/* An attempt in flight.  Everything about the task lives in its row. */
typedef struct inflight {
    uint32_t row;
    uint32_t gen;
    uint32_t next_free;     /* free-list link; UINT32_MAX ends it */
    int worker;             /* -1 when the slot is free */
} inflight_t;

/* A task waiting to run again: after a retry backoff, or at once when it
 * was given back by a drain or a lost worker. */
typedef struct retry_ent {
    double when;
    uint32_t row;
} retry_ent_t;

enum { DEF_BLOCKED = 0, DEF_ACTIVE = 1, DEF_ENDED = 2 };

typedef struct def_state {
    uint64_t next_index;
    uint64_t running;
    uint64_t waiting;
    uint64_t bad;           /* failed for good or skipped */
    double wall_sum;        /* of successful attempts: the expected duration */
    uint64_t wall_n;
    int state;
} def_state_t;

#define NO_ROW UINT32_MAX

_Static_assert (sizeof (gr_task_row_t) == 32, "task rows are 32 bytes");

struct gr_sched {
    const gr_spec_t *spec;
    gr_expand_t *x;
    gr_rng_t rng;
    def_state_t *defs;
    uint32_t *active;       /* ids of ACTIVE defs with tasks left to hand out */
    size_t nactive;

    gr_task_row_t *rows;
    size_t nrows, caprows;

    inflight_t *slots;
    uint32_t nslots, capslots;
    uint32_t free_head;

    retry_ent_t *heap;
    size_t nheap, capheap;

    /* key -> row, only for rows restored from a journal (open addressing). */
    uint64_t *mkeys;
    uint32_t *mrows;
    size_t mcap, mcount;
    bool restored;
    bool started;

    size_t ndefs_ended;
    gr_sched_stats_t st;
    gr_slow_task_t slow[GR_SCHED_SLOWEST];
    int nslow;
    gr_outcome_t *failures;
    int nfailures;
};

static void def_maybe_end (gr_sched_t *s, uint32_t id);

static bool deps_ended (gr_sched_t *s, const gr_taskdef_t *d, bool *any_bad)
{
    *any_bad = false;
    for (size_t i = 0; i < d->nafter; i++) {
        def_state_t *p = &s->defs[d->after[i]];
        if (p->state != DEF_ENDED)
            return false;
        if (p->bad > 0)
            *any_bad = true;
    }
    return true;
}

static void def_activate (gr_sched_t *s, uint32_t id)
{
    const gr_taskdef_t *d = &s->spec->tasks[id];
    def_state_t *ds = &s->defs[id];
    bool bad;

    if (ds->state != DEF_BLOCKED || !deps_ended (s, d, &bad))
        return;
    if (bad) {
        /* A prerequisite failed: nothing of this definition runs. */
        uint64_t left = d->count - ds->next_index;
        ds->next_index = d->count;
        ds->bad += left;
        s->st.skipped += left;
        ds->state = DEF_ACTIVE;
        def_maybe_end (s, id);
        return;
    }
    ds->state = DEF_ACTIVE;
    /* Keep the active list in spec order so earlier tasks go first. */
    size_t pos = s->nactive;
    while (pos > 0 && s->active[pos - 1] > id) {
        s->active[pos] = s->active[pos - 1];
        pos--;
    }
    s->active[pos] = id;
    s->nactive++;
}

static void def_maybe_end (gr_sched_t *s, uint32_t id)
{
    const gr_taskdef_t *d = &s->spec->tasks[id];
    def_state_t *ds = &s->defs[id];

    if (ds->state != DEF_ACTIVE || ds->next_index < d->count || ds->running > 0
        || ds->waiting > 0)
        return;
    ds->state = DEF_ENDED;
    s->ndefs_ended++;
    /* Wake the definitions that waited on this one. */
    for (size_t i = 0; i < s->spec->ntasks; i++) {
        const gr_taskdef_t *o = &s->spec->tasks[i];
        for (size_t j = 0; j < o->nafter; j++) {
            if (o->after[j] == id) {
                def_activate (s, (uint32_t)i);
                break;
            }
        }
    }
}

gr_sched_t *gr_sched_create (const gr_spec_t *spec, uint64_t seed)
{
    gr_sched_t *s = calloc (1, sizeof (*s));
    if (!s)
        return NULL;
    s->spec = spec;
    s->free_head = UINT32_MAX;
    gr_rng_seed (&s->rng, seed);
    if (!(s->x = gr_expand_create ())
        || !(s->defs = calloc (spec->ntasks ? spec->ntasks : 1, sizeof (*s->defs)))
        || !(s->active = calloc (spec->ntasks ? spec->ntasks : 1, sizeof (uint32_t)))
        || !(s->failures = calloc (GR_SCHED_FAILED_KEPT, sizeof (gr_outcome_t))))
        goto error;
    s->st.total = spec->total;
    return s;
error:
    gr_sched_destroy (s);
    errno = ENOMEM;
    return NULL;
}

/* Definitions become active on the first gr_sched_next, after any
 * restore, so that skips caused by restored failures are seen. */
static void start_defs (gr_sched_t *s)
{
    if (s->started)
        return;
    s->started = true;
    for (size_t i = 0; i < s->spec->ntasks; i++)
        def_activate (s, (uint32_t)i);
}

void gr_sched_destroy (gr_sched_t *s)
{
    if (!s)
        return;
    int saved = errno;
    gr_expand_destroy (s->x);
    free (s->defs);
    free (s->active);
    free (s->rows);
    free (s->slots);
    free (s->heap);
    free (s->mkeys);
    free (s->mrows);
    free (s->failures);
    free (s);
    errno = saved;
}

static int heap_push (gr_sched_t *s, double when, uint32_t row)
{
    if (s->nheap == s->capheap) {
        size_t ncap = s->capheap ? s->capheap * 2 : 64;
        retry_ent_t *h = realloc (s->heap, ncap * sizeof (*h));
        if (!h)
            return -1;
        s->heap = h;
        s->capheap = ncap;
    }
    size_t i = s->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (s->heap[p].when <= when)
            break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = (retry_ent_t){.when = when, .row = row};
    return 0;
}

static void heap_pop (gr_sched_t *s)
{
    retry_ent_t last = s->heap[--s->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && s->heap[c + 1].when < s->heap[c].when)
            c++;
        if (last.when <= s->heap[c].when)
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->nheap > 0)
        s->heap[i] = last;
}

static uint32_t row_new (gr_sched_t *s, uint64_t key, uint32_t def, uint64_t index)
{
    if (s->nrows == s->caprows) {
        size_t ncap = s->caprows ? s->caprows * 2 : 1024;
        if (ncap >= NO_ROW)
            return NO_ROW;
        gr_task_row_t *r = realloc (s->rows, ncap * sizeof (*r));
        if (!r)
            return NO_ROW;
        s->rows = r;
        s->caprows = ncap;
    }
    gr_task_row_t *r = &s->rows[s->nrows];
    memset (r, 0, sizeof (*r));
    r->key = key;
    r->def = def;
    r->index = index;
    r->state = GR_TASK_PENDING;
    return (uint32_t)s->nrows++;
}

static int slot_alloc (gr_sched_t *s, uint32_t *slotp)
{
    if (s->free_head != UINT32_MAX) {
        *slotp = s->free_head;
        s->free_head = s->slots[*slotp].next_free;
        return 0;
    }
    if (s->nslots == s->capslots) {
        uint32_t ncap = s->capslots ? s->capslots * 2 : 1024;
        inflight_t *p = realloc (s->slots, ncap * sizeof (*p));
        if (!p)
            return -1;
        s->slots = p;
        s->capslots = ncap;
    }
    *slotp = s->nslots++;
    s->slots[*slotp].gen = 0;
    return 0;
}

static void slot_free (gr_sched_t *s, uint32_t slot)
{
    s->slots[slot].worker = -1;
    s->slots[slot].next_free = s->free_head;
    s->free_head = slot;
}

/* The restore map. */
static size_t map_find (const gr_sched_t *s, uint64_t key)
{
    size_t mask = s->mcap - 1;
    size_t i = (size_t)gr_hash64_final (key) & mask;
    while (s->mrows[i] != NO_ROW && s->mkeys[i] != key)
        i = (i + 1) & mask;
    return i;
}

static uint32_t map_get (const gr_sched_t *s, uint64_t key)
{
    if (s->mcap == 0)
        return NO_ROW;
    return s->mrows[map_find (s, key)];
}

static int map_put (gr_sched_t *s, uint64_t key, uint32_t row)
{
    if ((s->mcount + 1) * 2 > s->mcap) {
        size_t ncap = s->mcap ? s->mcap * 2 : 1024;
        uint64_t *ok = s->mkeys;
        uint32_t *orow = s->mrows;
        size_t ocap = s->mcap;
        if (!(s->mkeys = malloc (ncap * sizeof (uint64_t)))
            || !(s->mrows = malloc (ncap * sizeof (uint32_t)))) {
            free (s->mkeys);
            s->mkeys = ok;
            s->mrows = orow;
            return -1;
        }
        s->mcap = ncap;
        for (size_t i = 0; i < ncap; i++)
            s->mrows[i] = NO_ROW;
        for (size_t i = 0; i < ocap; i++) {
            if (orow[i] != NO_ROW) {
                size_t j = map_find (s, ok[i]);
                s->mkeys[j] = ok[i];
                s->mrows[j] = orow[i];
            }
        }
        free (ok);
        free (orow);
    }
    size_t i = map_find (s, key);
    if (s->mrows[i] == NO_ROW)
        s->mcount++;
    s->mkeys[i] = key;
    s->mrows[i] = row;
    return 0;
}

static bool fits (const gr_taskdef_t *d, uint32_t cpus, uint32_t gpus, uint64_t mem)
{
    return d->cpus <= cpus && d->gpus <= gpus && (mem == 0 || d->mem <= mem);
}

static double expected (const gr_sched_t *s, uint32_t id)
{
    const def_state_t *ds = &s->defs[id];
    if (ds->wall_n > 0)
        return ds->wall_sum / (double)ds->wall_n;
    return s->spec->tasks[id].timeout;
}

static void note_failure (gr_sched_t *s, const gr_outcome_t *o)
{
    if (s->nfailures < GR_SCHED_FAILED_KEPT)
        s->failures[s->nfailures++] = *o;
}

/* A definition's cursor met a task an earlier incarnation finished. */
static void count_restored (gr_sched_t *s, uint32_t id, uint32_t row)
{
    gr_task_row_t *r = &s->rows[row];
    def_state_t *ds = &s->defs[id];
    const gr_taskdef_t *d = &s->spec->tasks[id];
    if (r->state == GR_TASK_DONE) {
        s->st.done++;
        s->st.resumed_done++;
        if (r->wall > 0) {
            ds->wall_sum += r->wall;
            ds->wall_n++;
        }
        return;
    }
    gr_outcome_t o = {.kind = r->state == GR_TASK_POISON ? GR_OUTCOME_POISON
                                                          : GR_OUTCOME_FAILED,
                      .def = id, .index = r->index, .key = r->key,
                      .attempt = r->attempts, .row = row, .worker = r->worker};
    gr_sched_describe (d, gr_task_row_exit (r), r->signal, r->flags, o.reason,
                       sizeof (o.reason));
    s->st.failed++;
    if (r->state == GR_TASK_POISON)
        s->st.poison++;
    ds->bad++;
    note_failure (s, &o);
}

/* Take a definition whose cursor is at its end off the active list.  It
 * ends once its last attempts do; if none is left (its last tasks were
 * finished by an earlier incarnation), it may end now. */
static void def_exhausted (gr_sched_t *s, size_t i, bool dispatching)
{
    uint32_t id = s->active[i];
    memmove (&s->active[i], &s->active[i + 1], (s->nactive - i - 1) * sizeof (uint32_t));
    s->nactive--;
    if (!dispatching)
        def_maybe_end (s, id);
}

int gr_sched_next (gr_sched_t *s, double now, int worker, uint32_t cpus,
                   uint32_t gpus, uint64_t mem, double max_duration,
                   gr_assign_rec_t *rec)
{
    uint32_t slot, row = NO_ROW;

    start_defs (s);
    if (s->nheap > 0 && s->heap[0].when <= now) {
        uint32_t hr = s->heap[0].row;
        uint32_t id = s->rows[hr].def;
        if (fits (&s->spec->tasks[id], cpus, gpus, mem) && expected (s, id) <= max_duration) {
            if (slot_alloc (s, &slot) < 0)
                return -1;
            heap_pop (s);
            row = hr;
            s->defs[id].waiting--;
            s->st.waiting--;
            goto found;
        }
    }
    for (size_t i = 0; i < s->nactive;) {
        uint32_t id = s->active[i];
        const gr_taskdef_t *d = &s->spec->tasks[id];
        def_state_t *ds = &s->defs[id];
        if (!fits (d, cpus, gpus, mem) || expected (s, id) > max_duration) {
            i++;
            continue;
        }
        while (ds->next_index < d->count) {
            if (gr_expand_select (s->x, d, ds->next_index) < 0)
                return -1;
            uint64_t key = gr_expand_key (s->x);
            uint32_t r = s->restored ? map_get (s, key) : NO_ROW;
            if (r != NO_ROW) {
                gr_task_row_t *tr = &s->rows[r];
                tr->def = id;
                tr->index = ds->next_index;
                if (tr->state == GR_TASK_DONE || tr->state == GR_TASK_FAILED
                    || tr->state == GR_TASK_POISON) {
                    ds->next_index++;
                    count_restored (s, id, r);
                    continue;
                }
            }
            if (slot_alloc (s, &slot) < 0)
                return -1;
            if (r == NO_ROW && (r = row_new (s, key, id, ds->next_index)) == NO_ROW) {
                slot_free (s, slot);
                errno = ENOMEM;
                return -1;
            }
            ds->next_index++;
            row = r;
            if (ds->next_index == d->count)
                def_exhausted (s, i, true);
            goto found;
        }
        def_exhausted (s, i, false);
    }
    return 0;
found:;
    inflight_t *f = &s->slots[slot];
    gr_task_row_t *tr = &s->rows[row];
    f->row = row;
    f->worker = worker;
    f->gen++;
    tr->attempts++;
    tr->state = GR_TASK_RUNNING;
    tr->worker = (uint16_t)(worker < 0 ? 0 : worker > 65535 ? 65535 : worker);
    s->defs[tr->def].running++;
    s->st.running++;
    rec->id = ((uint64_t)f->gen << 32) | slot;
    rec->key = tr->key;
    rec->index = tr->index;
    rec->def = tr->def;
    rec->attempt = tr->attempts;
    return 1;
}

static void note_slow (gr_sched_t *s, const gr_task_row_t *tr, const gr_result_rec_t *r)
{
    int n = s->nslow;
    if (n == GR_SCHED_SLOWEST && r->wall <= s->slow[n - 1].wall)
        return;
    int i = n < GR_SCHED_SLOWEST ? n : n - 1;
    while (i > 0 && s->slow[i - 1].wall < r->wall) {
        s->slow[i] = s->slow[i - 1];
        i--;
    }
    s->slow[i] = (gr_slow_task_t){.wall = r->wall, .def = tr->def,
                                  .index = tr->index, .key = tr->key,
                                  .maxrss_kb = r->maxrss_kb};
    if (n < GR_SCHED_SLOWEST)
        s->nslow++;
}

void gr_sched_describe (const gr_taskdef_t *d, int exit_code, int signal,
                        uint32_t flags, char *buf, size_t len)
{
    char sig[32];
    if (flags & GR_RES_SPAWN)
        snprintf (buf, len, "could not start: %s", strerror (exit_code));
    else if (flags & GR_RES_TIMEOUT)
        snprintf (buf, len, "timeout after %gs", d->timeout);
    else if (flags & GR_RES_KILLED)
        snprintf (buf, len, "killed while draining");
    else if (flags & GR_RES_RETURNED)
        snprintf (buf, len, "given back while draining");
    else if (signal)
        snprintf (buf, len, "killed by %s", gr_signal_name (signal, sig, sizeof (sig)));
    else
        snprintf (buf, len, "exit %d", exit_code);
}

static bool is_success (const gr_taskdef_t *d, const gr_result_rec_t *r)
{
    if (r->flags || r->signal)
        return false;
    for (size_t i = 0; i < d->nsuccess; i++) {
        if (d->success[i] == r->exit_code)
            return true;
    }
    return false;
}

/* Put a task back to run again at `when`. */
static int requeue (gr_sched_t *s, uint32_t row, double when)
{
    gr_task_row_t *tr = &s->rows[row];
    if (heap_push (s, when, row) < 0)
        return -1;
    tr->state = GR_TASK_WAITING;
    s->defs[tr->def].waiting++;
    s->st.waiting++;
    return 0;
}

int gr_sched_complete (gr_sched_t *s, double now, const gr_result_rec_t *r,
                       gr_outcome_t *out)
{
    uint32_t slot = (uint32_t)(r->id & 0xffffffffu);
    uint32_t gen = (uint32_t)(r->id >> 32);

    memset (out, 0, sizeof (*out));
    if (slot >= s->nslots || s->slots[slot].gen != gen || s->slots[slot].worker < 0) {
        out->kind = GR_OUTCOME_STALE;
        return 0;
    }
    inflight_t *f = &s->slots[slot];
    uint32_t row = f->row;
    gr_task_row_t *tr = &s->rows[row];
    const gr_taskdef_t *d = &s->spec->tasks[tr->def];
    def_state_t *ds = &s->defs[tr->def];

    out->def = tr->def;
    out->index = tr->index;
    out->key = tr->key;
    out->attempt = tr->attempts;
    out->row = row;
    out->worker = f->worker;
    slot_free (s, slot);
    ds->running--;
    s->st.running--;

    if (r->flags & (GR_RES_RETURNED | GR_RES_KILLED)) {
        /* Given back by a drain: not a failure.  A task that never started
         * did not use up an attempt. */
        out->kind = GR_OUTCOME_REQUEUED;
        gr_sched_describe (d, r->exit_code, r->signal, r->flags, out->reason,
                           sizeof (out->reason));
        if (r->flags & GR_RES_RETURNED)
            tr->attempts--;
        s->st.requeued++;
        if (requeue (s, row, now) < 0)
            return -1;
        return 0;
    }

    s->st.attempts++;
    s->st.busy_seconds += r->wall;
    s->st.cpu_seconds += r->utime + r->stime;
    tr->wall = (float)r->wall;
    tr->maxrss_kb = r->maxrss_kb > UINT32_MAX ? UINT32_MAX : (uint32_t)r->maxrss_kb;
    tr->exit_code = (uint8_t)r->exit_code;
    tr->signal = (uint8_t)r->signal;
    tr->flags = r->flags & 0xf;
    if (r->flags & GR_RES_TIMEOUT)
        s->st.timeouts++;
    bool crash = r->signal && !(r->flags & (GR_RES_TIMEOUT | GR_RES_KILLED));
    if (crash) {
        s->st.crashes++;
        if (tr->crashes < UINT8_MAX)
            tr->crashes++;
    }

    if (is_success (d, r)) {
        out->kind = GR_OUTCOME_DONE;
        tr->state = GR_TASK_DONE;
        s->st.done++;
        ds->wall_sum += r->wall;
        ds->wall_n++;
        note_slow (s, tr, r);
    }
    else {
        gr_sched_describe (d, r->exit_code, r->signal, r->flags, out->reason,
                           sizeof (out->reason));
        if (crash && tr->crashes >= d->retry.crash_limit) {
            out->kind = GR_OUTCOME_POISON;
            tr->state = GR_TASK_POISON;
            s->st.poison++;
        }
        else if (tr->attempts <= d->retry.max) {
            out->kind = GR_OUTCOME_RETRY;
            out->delay = gr_backoff_delay (&d->retry, tr->attempts,
                                           gr_rng_uniform (&s->rng));
            if (requeue (s, row, now + out->delay) < 0)
                return -1;
            s->st.retries++;
        }
        else {
            out->kind = GR_OUTCOME_FAILED;
            tr->state = GR_TASK_FAILED;
        }
        if (out->kind != GR_OUTCOME_RETRY) {
            s->st.failed++;
            ds->bad++;
            note_failure (s, out);
        }
    }
    def_maybe_end (s, out->def);
    return 0;
}

int gr_sched_requeue_worker (gr_sched_t *s, int worker, gr_outcome_f fn, void *arg)
{
    int n = 0;
    for (uint32_t slot = 0; slot < s->nslots; slot++) {
        inflight_t *f = &s->slots[slot];
        if (f->worker != worker)
            continue;
        gr_task_row_t *tr = &s->rows[f->row];
        gr_outcome_t o = {.kind = GR_OUTCOME_REQUEUED, .def = tr->def,
                          .index = tr->index, .key = tr->key,
                          .attempt = tr->attempts, .row = f->row, .worker = worker};
        snprintf (o.reason, sizeof (o.reason), "worker %d lost", worker);
        s->defs[tr->def].running--;
        s->st.running--;
        s->st.requeued++;
        uint32_t row = f->row;
        slot_free (s, slot);
        if (requeue (s, row, 0) < 0)
            return -1;
        if (fn)
            fn (&o, arg);
        n++;
    }
    return n;
}

/* The row of a key the journal names, made on first sight; attempts
 * continue from the highest one seen. */
static int restore_row (gr_sched_t *s, uint64_t key, uint32_t def, uint64_t index,
                        uint32_t attempt, uint32_t *rowp)
{
    uint32_t r = map_get (s, key);
    if (r == NO_ROW) {
        if ((r = row_new (s, key, def, index)) == NO_ROW || map_put (s, key, r) < 0) {
            errno = ENOMEM;
            return -1;
        }
    }
    s->restored = true;
    gr_task_row_t *tr = &s->rows[r];
    if (attempt > tr->attempts)
        tr->attempts = (uint16_t)(attempt > UINT16_MAX ? UINT16_MAX : attempt);
    *rowp = r;
    return 0;
}

int gr_sched_restore_start (gr_sched_t *s, const gr_jstart_t *t, int worker)
{
    uint32_t r;
    if (restore_row (s, t->key, t->def, t->index, t->attempt, &r) < 0)
        return -1;
    s->rows[r].worker = (uint16_t)worker;
    return 0;
}

int gr_sched_restore_end (gr_sched_t *s, const gr_jend_t *t, int worker)
{
    uint32_t r;
    if (restore_row (s, t->key, t->def, t->index, t->attempt, &r) < 0)
        return -1;
    gr_task_row_t *tr = &s->rows[r];
    if (tr->state == GR_TASK_DONE) {
        /* The first successful end wins; a later one is a duplicate. */
        if (t->outcome == GR_JOUT_DONE)
            s->st.duplicates++;
        return 0;
    }
    if (t->outcome == GR_JOUT_REQUEUED) {
        if (t->flags & GR_RES_RETURNED && tr->attempts > 0 && t->attempt == tr->attempts)
            tr->attempts--;
        tr->state = GR_TASK_PENDING;
        return 0;
    }
    tr->wall = (float)t->wall;
    tr->maxrss_kb = t->maxrss_kb > UINT32_MAX ? UINT32_MAX : (uint32_t)t->maxrss_kb;
    tr->exit_code = (uint8_t)t->exit_code;
    tr->signal = (uint8_t)t->signal;
    tr->flags = t->flags & 0xf;
    tr->worker = (uint16_t)worker;
    if (t->signal && !(t->flags & (GR_RES_TIMEOUT | GR_RES_KILLED)) && tr->crashes < UINT8_MAX)
        tr->crashes++;
    switch (t->outcome) {
        case GR_JOUT_DONE:
            tr->state = GR_TASK_DONE;
            break;
        case GR_JOUT_FAILED:
            tr->state = GR_TASK_FAILED;
            break;
        case GR_JOUT_POISON:
            tr->state = GR_TASK_POISON;
            break;
        default:
            tr->state = GR_TASK_PENDING;
            break;
    }
    return 0;
}

int gr_sched_restore_finish (gr_sched_t *s, bool retry_failed)
{
    for (size_t i = 0; i < s->nrows; i++) {
        gr_task_row_t *tr = &s->rows[i];
        if (retry_failed && (tr->state == GR_TASK_FAILED || tr->state == GR_TASK_POISON)) {
            tr->state = GR_TASK_PENDING;
            tr->crashes = 0;
        }
        /* Whatever was running or waiting when the run stopped runs again. */
        if (tr->state == GR_TASK_RUNNING || tr->state == GR_TASK_WAITING)
            tr->state = GR_TASK_PENDING;
    }
    return 0;
}

bool gr_sched_finished (const gr_sched_t *s)
{
    return s->ndefs_ended == s->spec->ntasks;
}

double gr_sched_next_retry (const gr_sched_t *s)
{
    return s->nheap ? s->heap[0].when : 0;
}

const gr_sched_stats_t *gr_sched_stats (const gr_sched_t *s)
{
    return &s->st;
}

int gr_sched_slowest (const gr_sched_t *s, const gr_slow_task_t **out)
{
    *out = s->slow;
    return s->nslow;
}

int gr_sched_failures (const gr_sched_t *s, const gr_outcome_t **out)
{
    *out = s->failures;
    return s->nfailures;
}

size_t gr_sched_rows (const gr_sched_t *s, const gr_task_row_t **rows)
{
    *rows = s->rows;
    return s->nrows;
}
