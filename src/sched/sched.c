#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/common/grow.h"
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

    /* Placement (gr_sched_set_placement). */
    bool placing;           /* some definition has replicas or retry_away */
    int nranks;
    uint32_t *dom;          /* nranks * GR_SCHED_LEVELS domain ids */
    uint8_t *req;           /* nranks * ntasks: meets require:; NULL: all */
    uint8_t *usable;        /* nranks */
    uint32_t *sib;          /* per row when placing: the next replica of its
                               task, a ring; NO_ROW when alone */
    uint8_t *cur;           /* per row when placing: placed in this
                               incarnation (older placements name ranks
                               of another incarnation) */
    uint32_t *pend;         /* replicas made, waiting to be placed (FIFO) */
    size_t npend, cappend;

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
    free (s->dom);
    free (s->req);
    free (s->usable);
    free (s->sib);
    free (s->cur);
    free (s->pend);
    free (s);
    errno = saved;
}

static int heap_push (gr_sched_t *s, double when, uint32_t row)
{
    retry_ent_t *h = gr_grow (s->heap, &s->capheap, s->nheap, sizeof (*h), 64);
    if (!h)
        return -1;
    s->heap = h;
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

/* Take entry i out of the heap. */
static void heap_remove (gr_sched_t *s, size_t i)
{
    retry_ent_t last = s->heap[--s->nheap];
    if (i == s->nheap)
        return;
    while (i > 0 && s->heap[(i - 1) / 2].when > last.when) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
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
    s->heap[i] = last;
}

/* The per-row placement arrays follow the task table's capacity. */
static int aux_grow (gr_sched_t *s)
{
    if (!s->placing || s->caprows == 0)
        return 0;
    uint32_t *sib = realloc (s->sib, s->caprows * sizeof (*sib));
    if (!sib)
        return -1;
    s->sib = sib;
    uint8_t *cur = realloc (s->cur, s->caprows);
    if (!cur)
        return -1;
    s->cur = cur;
    return 0;
}

static uint32_t row_new (gr_sched_t *s, uint64_t key, uint32_t def, uint64_t index)
{
    if (s->nrows == s->caprows) {
        /* Rows are numbered in 32 bits, NO_ROW excluded: that is where
         * GR_SPEC_MAX_TASKS comes from. */
        size_t ncap = s->caprows ? s->caprows * 2 : 1024;
        if (s->caprows >= NO_ROW)
            return NO_ROW;
        if (ncap > NO_ROW)
            ncap = NO_ROW;
        gr_task_row_t *r = realloc (s->rows, ncap * sizeof (*r));
        if (!r)
            return NO_ROW;
        s->rows = r;
        s->caprows = ncap;
        if (aux_grow (s) < 0)
            return NO_ROW;
    }
    gr_task_row_t *r = &s->rows[s->nrows];
    memset (r, 0, sizeof (*r));
    r->key = key;
    r->def = def;
    r->index = index;
    r->state = GR_TASK_PENDING;
    if (s->placing) {
        s->sib[s->nrows] = NO_ROW;
        s->cur[s->nrows] = 0;
    }
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

/* ------------------------------------------------------------------ */
/* Placement. */

int gr_sched_set_placement (gr_sched_t *s, int nranks, const uint32_t *dom,
                            const uint8_t *req)
{
    size_t nd = (size_t)nranks * GR_SCHED_LEVELS;
    size_t nq = (size_t)nranks * s->spec->ntasks;

    if (nranks <= 0 || !dom) {
        errno = EINVAL;
        return -1;
    }
    free (s->dom);
    free (s->req);
    free (s->usable);
    s->req = NULL;
    if (!(s->dom = malloc (nd * sizeof (*s->dom))) || !(s->usable = malloc ((size_t)nranks))
        || (req && !(s->req = malloc (nq ? nq : 1))))
        goto nomem;
    memcpy (s->dom, dom, nd * sizeof (*s->dom));
    /* A rank on no node (the master, when it runs no worker) takes none. */
    for (int r = 0; r < nranks; r++)
        s->usable[r] = dom[(size_t)r * GR_SCHED_LEVELS + GR_LEVEL_NODE] != UINT32_MAX;
    if (req)
        memcpy (s->req, req, nq);
    s->nranks = nranks;
    for (size_t i = 0; i < s->spec->ntasks; i++) {
        const gr_taskdef_t *d = &s->spec->tasks[i];
        if ((d->replicas > 1 && d->spread != GR_LEVEL_NONE) || d->retry_away != GR_LEVEL_NONE)
            s->placing = true;
    }
    if (s->placing) {
        bool fresh = s->sib == NULL;
        if (aux_grow (s) < 0)
            goto nomem;
        /* Rows restored from a journal are alone until their task's
         * replicas are gathered, and were placed by another incarnation. */
        for (size_t r = 0; fresh && r < s->nrows; r++) {
            s->sib[r] = NO_ROW;
            s->cur[r] = 0;
        }
    }
    return 0;
nomem:
    errno = ENOMEM;
    return -1;
}

void gr_sched_set_usable (gr_sched_t *s, int rank, bool usable)
{
    if (s->usable && rank >= 0 && rank < s->nranks)
        s->usable[rank] = usable;
}

static bool req_ok (const gr_sched_t *s, int rank, uint32_t def)
{
    return !s->req || s->req[(size_t)rank * s->spec->ntasks + def];
}

/* The domain of rank at level, or UINT32_MAX when unknown. */
static uint32_t dom_of (const gr_sched_t *s, int rank, gr_level_t level)
{
    if (!s->dom || rank < 0 || rank >= s->nranks || level == GR_LEVEL_NONE)
        return UINT32_MAX;
    return s->dom[(size_t)rank * GR_SCHED_LEVELS + (size_t)level];
}

/* Could a usable rank outside domain `bad` of level run def? */
static bool room_elsewhere (const gr_sched_t *s, uint32_t def, gr_level_t level, uint32_t bad)
{
    for (int r = 0; r < s->nranks; r++) {
        if (s->usable[r] && req_ok (s, r, def) && dom_of (s, r, level) != bad)
            return true;
    }
    return false;
}

/* Does spread forbid row on a worker in domain d (of the spread level)? */
static bool sibling_in (const gr_sched_t *s, uint32_t row, uint32_t d)
{
    const gr_taskdef_t *def = &s->spec->tasks[s->rows[row].def];
    if (!s->placing || def->replicas < 2 || def->spread == GR_LEVEL_NONE)
        return false;
    for (uint32_t r = s->sib[row]; r != NO_ROW && r != row; r = s->sib[r]) {
        const gr_task_row_t *o = &s->rows[r];
        if (!s->cur[r] || (o->state != GR_TASK_RUNNING && o->state != GR_TASK_DONE))
            continue;
        if (dom_of (s, o->worker, def->spread) == d)
            return true;
    }
    return false;
}

/* May row run on worker, as far as domains go? */
static bool placeable (const gr_sched_t *s, uint32_t row, int worker)
{
    const gr_task_row_t *tr = &s->rows[row];
    const gr_taskdef_t *d = &s->spec->tasks[tr->def];

    if (!s->dom || worker < 0 || worker >= s->nranks)
        return true;
    if (!req_ok (s, worker, tr->def))
        return false;
    if (!s->placing)
        return true;
    if (sibling_in (s, row, dom_of (s, worker, d->spread)))
        return false;
    if (d->retry_away != GR_LEVEL_NONE && s->cur[row] && tr->attempts > 0) {
        uint32_t bad = dom_of (s, tr->worker, d->retry_away);
        if (bad == dom_of (s, worker, d->retry_away)
            && room_elsewhere (s, tr->def, d->retry_away, bad))
            return false;
    }
    return true;
}

typedef struct want {
    double now;
    int worker;
    uint32_t cpus, gpus;
    uint64_t mem;
    double max_duration;
    const uint8_t *eligible;
} want_t;

static bool def_ok (const gr_sched_t *s, uint32_t id, const want_t *w)
{
    return (!w->eligible || w->eligible[id])
           && (w->worker < 0 || w->worker >= s->nranks || req_ok (s, w->worker, id))
           && fits (&s->spec->tasks[id], w->cpus, w->gpus, w->mem)
           && expected (s, id) <= w->max_duration;
}

static bool takeable (const gr_sched_t *s, uint32_t row, const want_t *w)
{
    return def_ok (s, s->rows[row].def, w) && placeable (s, row, w->worker);
}

/* The most replicas waiting to be placed before the cursors stop making
 * more: enough to keep every worker fed. */
static size_t pend_limit (const gr_sched_t *s)
{
    return 64 + 4 * (size_t)s->nranks;
}

static int pend_push (gr_sched_t *s, uint32_t row)
{
    uint32_t *p = gr_grow (s->pend, &s->cappend, s->npend, sizeof (*p), 64);
    if (!p)
        return -1;
    s->pend = p;
    s->pend[s->npend++] = row;
    gr_task_row_t *tr = &s->rows[row];
    tr->state = GR_TASK_PENDING;
    s->defs[tr->def].waiting++;
    s->st.waiting++;
    return 0;
}

static void pend_remove (gr_sched_t *s, size_t k)
{
    uint32_t row = s->pend[k];
    memmove (&s->pend[k], &s->pend[k + 1], (s->npend - k - 1) * sizeof (uint32_t));
    s->npend--;
    s->defs[s->rows[row].def].waiting--;
    s->st.waiting--;
}

/* Make the rows of all replicas of the task at definition id's cursor,
 * linked in a ring: those an earlier incarnation finished are counted,
 * the others wait in pend to be placed one by one. */
static int make_replicas (gr_sched_t *s, uint32_t id)
{
    const gr_taskdef_t *d = &s->spec->tasks[id];
    def_state_t *ds = &s->defs[id];
    uint32_t first = NO_ROW, prev = NO_ROW;

    for (uint32_t k = 0; k < d->replicas && ds->next_index < d->count; k++) {
        uint64_t index = ds->next_index++;
        if (gr_expand_select (s->x, d, index) < 0)
            return -1;
        uint64_t key = gr_expand_key (s->x);
        uint32_t r = s->restored ? map_get (s, key) : NO_ROW;
        if (r == NO_ROW && (r = row_new (s, key, id, index)) == NO_ROW) {
            errno = ENOMEM;
            return -1;
        }
        gr_task_row_t *tr = &s->rows[r];
        tr->def = id;
        tr->index = index;
        if (first == NO_ROW)
            first = r;
        else
            s->sib[prev] = r;
        prev = r;
        if (tr->state == GR_TASK_DONE || tr->state == GR_TASK_FAILED
            || tr->state == GR_TASK_POISON)
            count_restored (s, id, r);
        else if (pend_push (s, r) < 0)
            return -1;
    }
    if (prev != NO_ROW)
        s->sib[prev] = first == prev ? NO_ROW : first;
    return 0;
}

int gr_sched_next (gr_sched_t *s, double now, int worker, uint32_t cpus,
                   uint32_t gpus, uint64_t mem, double max_duration,
                   gr_assign_rec_t *rec)
{
    return gr_sched_next_placed (s, now, worker, cpus, gpus, mem, max_duration, NULL, rec);
}

int gr_sched_next_placed (gr_sched_t *s, double now, int worker, uint32_t cpus,
                          uint32_t gpus, uint64_t mem, double max_duration,
                          const uint8_t *eligible, gr_assign_rec_t *rec)
{
    uint32_t slot, row = NO_ROW;
    const want_t w = {.now = now, .worker = worker, .cpus = cpus, .gpus = gpus,
                      .mem = mem, .max_duration = max_duration, .eligible = eligible};
    bool choosy = s->placing || eligible || s->req;

    start_defs (s);
    if (s->nheap > 0 && s->heap[0].when <= now) {
        size_t hi = SIZE_MAX;
        if (takeable (s, s->heap[0].row, &w))
            hi = 0;
        for (size_t k = 1; choosy && hi == SIZE_MAX && k < s->nheap; k++) {
            if (s->heap[k].when <= now && takeable (s, s->heap[k].row, &w))
                hi = k;
        }
        if (hi != SIZE_MAX) {
            uint32_t hr = s->heap[hi].row;
            if (slot_alloc (s, &slot) < 0)
                return -1;
            heap_remove (s, hi);
            row = hr;
            s->defs[s->rows[hr].def].waiting--;
            s->st.waiting--;
            goto found;
        }
    }
again:
    for (size_t k = 0; k < s->npend; k++) {
        if (takeable (s, s->pend[k], &w)) {
            if (slot_alloc (s, &slot) < 0)
                return -1;
            row = s->pend[k];
            pend_remove (s, k);
            goto found;
        }
    }
    for (size_t i = 0; i < s->nactive;) {
        uint32_t id = s->active[i];
        const gr_taskdef_t *d = &s->spec->tasks[id];
        def_state_t *ds = &s->defs[id];
        if (!def_ok (s, id, &w)) {
            i++;
            continue;
        }
        if (s->placing && d->replicas > 1) {
            if (s->npend >= pend_limit (s)) {
                i++;
                continue;
            }
            if (make_replicas (s, id) < 0)
                return -1;
            if (ds->next_index == d->count)
                def_exhausted (s, i, false);
            goto again;
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
    f->worker = worker < 0 ? INT_MAX : worker; /* no worker yet (a group) */
    f->gen++;
    tr->attempts++;
    tr->state = GR_TASK_RUNNING;
    if (s->placing)
        s->cur[row] = 1;
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
    if ((flags & GR_RES_UNPLACED) == GR_RES_UNPLACED)
        snprintf (buf, len, "could not be placed on any usable worker");
    else if (flags & GR_RES_SPAWN)
        snprintf (buf, len, "could not start: %s", strerror (exit_code));
    else if (flags & GR_RES_TIMEOUT)
        snprintf (buf, len, "timeout after %gs", d->timeout);
    else if (flags & GR_RES_OUTLOST)
        snprintf (buf, len, "its output could not be kept: %s", strerror (exit_code));
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
    return !r->flags && !r->signal && gr_spec_success (d, r->exit_code);
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

    if ((r->flags & GR_RES_UNPLACED) == GR_RES_UNPLACED) {
        /* The master found no room for it anywhere (a group larger than
         * the workers left): failed for good, not run. */
        out->kind = GR_OUTCOME_FAILED;
        tr->state = GR_TASK_FAILED;
        tr->flags = r->flags & 0xf;
        tr->exit_code = 0;
        tr->signal = 0;
        gr_sched_describe (d, r->exit_code, r->signal, r->flags, out->reason,
                           sizeof (out->reason));
        s->st.failed++;
        ds->bad++;
        note_failure (s, out);
        def_maybe_end (s, out->def);
        return 0;
    }
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
    bool ok = is_success (d, r);
    if (crash)
        s->st.crashes++;
    /* A group counts its failures there instead: max_restarts limits
     * those, not the restarts after a preemption or a lost worker. */
    if ((d->group ? !ok : crash) && tr->crashes < UINT8_MAX)
        tr->crashes++;

    if (ok) {
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
        else if ((d->group ? tr->crashes : tr->attempts) <= d->retry.max) {
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

int gr_sched_set_worker (gr_sched_t *s, uint64_t id, int worker)
{
    uint32_t slot = (uint32_t)(id & 0xffffffffu);
    uint32_t gen = (uint32_t)(id >> 32);
    if (worker < 0 || slot >= s->nslots || s->slots[slot].gen != gen) {
        errno = ENOENT;
        return -1;
    }
    s->slots[slot].worker = worker;
    s->rows[s->slots[slot].row].worker = (uint16_t)(worker > 65535 ? 65535 : worker);
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

/* Fail row for good: it cannot be placed. */
static void fail_row (gr_sched_t *s, uint32_t row, gr_outcome_f fn, void *arg)
{
    gr_task_row_t *tr = &s->rows[row];
    const gr_taskdef_t *d = &s->spec->tasks[tr->def];
    def_state_t *ds = &s->defs[tr->def];
    gr_outcome_t o = {.kind = GR_OUTCOME_FAILED, .def = tr->def, .index = tr->index,
                      .key = tr->key, .attempt = tr->attempts, .row = row,
                      .worker = tr->worker};
    uint32_t usable = 0;

    if (d->replicas > 1 && d->spread != GR_LEVEL_NONE) {
        /* Count the usable domains of the spread level this task may use. */
        uint32_t seen[64];
        for (int r = 0; r < s->nranks; r++) {
            uint32_t dd = dom_of (s, r, d->spread), k;
            if (!s->usable[r] || !req_ok (s, r, tr->def))
                continue;
            for (k = 0; k < usable && seen[k] != dd; k++)
                ;
            if (k == usable && usable < 64)
                seen[usable++] = dd;
        }
        snprintf (o.reason, sizeof (o.reason),
                  "cannot be placed: its %u replicas need %u distinct %ss, %u usable left",
                  d->replicas, d->replicas, gr_level_name (d->spread), usable);
    }
    else
        snprintf (o.reason, sizeof (o.reason),
                  "cannot be placed: no usable node meets its require:");
    tr->state = GR_TASK_FAILED;
    tr->flags = GR_RES_UNPLACED;
    tr->signal = 0;
    ds->waiting--;
    s->st.waiting--;
    s->st.failed++;
    ds->bad++;
    note_failure (s, &o);
    if (fn)
        fn (&o, arg);
    def_maybe_end (s, tr->def);
}

/* Could some usable rank take row? */
static bool placeable_somewhere (const gr_sched_t *s, uint32_t row)
{
    for (int r = 0; r < s->nranks; r++) {
        if (s->usable[r] && placeable (s, row, r))
            return true;
    }
    return false;
}

int gr_sched_fail_unplaceable (gr_sched_t *s, gr_outcome_f fn, void *arg)
{
    int n = 0;
    if (!s->dom)
        return 0;
    for (size_t k = 0; k < s->npend;) {
        uint32_t row = s->pend[k];
        if (placeable_somewhere (s, row)) {
            k++;
            continue;
        }
        memmove (&s->pend[k], &s->pend[k + 1], (s->npend - k - 1) * sizeof (uint32_t));
        s->npend--;
        fail_row (s, row, fn, arg);
        n++;
    }
    for (size_t k = 0; k < s->nheap;) {
        uint32_t row = s->heap[k].row;
        if (placeable_somewhere (s, row)) {
            k++;
            continue;
        }
        heap_remove (s, k);
        fail_row (s, row, fn, arg);
        n++;
        k = 0; /* the heap moved */
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
    bool group = t->def < s->spec->ntasks && s->spec->tasks[t->def].group;
    if ((group ? t->outcome == GR_JOUT_RETRY || t->outcome == GR_JOUT_FAILED
               : t->signal && !(t->flags & (GR_RES_TIMEOUT | GR_RES_KILLED)))
        && tr->crashes < UINT8_MAX)
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
