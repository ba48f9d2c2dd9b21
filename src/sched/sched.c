#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/common/hash.h"
#include "src/exec/exec.h"
#include "sched.h"

typedef struct inflight {
    uint64_t index;
    uint64_t key;
    uint32_t def;
    uint32_t attempt;
    uint32_t gen;
    uint32_t crashes;
    uint32_t next_free;     /* free-list link; UINT32_MAX ends it */
    int worker;             /* -1 when the slot is free */
} inflight_t;

typedef struct retry_ent {
    double when;
    uint64_t index;
    uint64_t key;
    uint32_t def;
    uint32_t attempt;       /* the attempt number it will run as */
    uint32_t crashes;
} retry_ent_t;

enum { DEF_BLOCKED = 0, DEF_ACTIVE = 1, DEF_ENDED = 2 };

typedef struct def_state {
    uint64_t next_index;
    uint64_t running;
    uint64_t waiting;
    uint64_t bad;           /* failed for good or skipped */
    int state;
} def_state_t;

struct gr_sched {
    const gr_spec_t *spec;
    gr_expand_t *x;
    gr_rng_t rng;
    def_state_t *defs;
    uint32_t *active;       /* ids of ACTIVE defs with tasks left to hand out */
    size_t nactive;

    inflight_t *slots;
    uint32_t nslots, capslots;
    uint32_t free_head;

    retry_ent_t *heap;
    size_t nheap, capheap;

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
    for (size_t i = 0; i < spec->ntasks; i++)
        def_activate (s, (uint32_t)i);
    return s;
error:
    gr_sched_destroy (s);
    errno = ENOMEM;
    return NULL;
}

void gr_sched_destroy (gr_sched_t *s)
{
    if (!s)
        return;
    int saved = errno;
    gr_expand_destroy (s->x);
    free (s->defs);
    free (s->active);
    free (s->slots);
    free (s->heap);
    free (s->failures);
    free (s);
    errno = saved;
}

/* Binary min-heap on `when`. */
static void heap_push (gr_sched_t *s, const retry_ent_t *e)
{
    if (s->nheap == s->capheap) {
        size_t ncap = s->capheap ? s->capheap * 2 : 64;
        retry_ent_t *h = realloc (s->heap, ncap * sizeof (*h));
        if (!h)
            abort (); /* cannot drop a task silently */
        s->heap = h;
        s->capheap = ncap;
    }
    size_t i = s->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (s->heap[p].when <= e->when)
            break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = *e;
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

static bool fits (const gr_taskdef_t *d, uint32_t cpus, uint32_t gpus, uint64_t mem)
{
    return d->cpus <= cpus && d->gpus <= gpus && (mem == 0 || d->mem <= mem);
}

int gr_sched_next (gr_sched_t *s, double now, int worker, uint32_t cpus,
                   uint32_t gpus, uint64_t mem, gr_assign_rec_t *rec)
{
    uint32_t slot;
    inflight_t *f;

    if (s->nheap > 0 && s->heap[0].when <= now
        && fits (&s->spec->tasks[s->heap[0].def], cpus, gpus, mem)) {
        retry_ent_t e = s->heap[0];
        heap_pop (s);
        if (slot_alloc (s, &slot) < 0) {
            heap_push (s, &e);
            return -1;
        }
        f = &s->slots[slot];
        f->def = e.def;
        f->index = e.index;
        f->key = e.key;
        f->attempt = e.attempt;
        f->crashes = e.crashes;
        s->defs[e.def].waiting--;
        s->st.waiting--;
        goto found;
    }
    for (size_t i = 0; i < s->nactive; i++) {
        uint32_t id = s->active[i];
        const gr_taskdef_t *d = &s->spec->tasks[id];
        def_state_t *ds = &s->defs[id];
        if (!fits (d, cpus, gpus, mem))
            continue;
        if (slot_alloc (s, &slot) < 0)
            return -1;
        if (gr_expand_select (s->x, d, ds->next_index) < 0) {
            s->slots[slot].next_free = s->free_head;
            s->free_head = slot;
            return -1;
        }
        f = &s->slots[slot];
        f->def = id;
        f->index = ds->next_index++;
        f->key = gr_expand_key (s->x);
        f->attempt = 1;
        f->crashes = 0;
        if (ds->next_index == d->count) {
            memmove (&s->active[i], &s->active[i + 1],
                     (s->nactive - i - 1) * sizeof (uint32_t));
            s->nactive--;
        }
        goto found;
    }
    return 0;
found:
    f->worker = worker;
    f->gen++;
    s->defs[f->def].running++;
    s->st.running++;
    rec->id = ((uint64_t)f->gen << 32) | slot;
    rec->key = f->key;
    rec->index = f->index;
    rec->def = f->def;
    rec->attempt = f->attempt;
    return 1;
}

static void note_slow (gr_sched_t *s, const inflight_t *f, const gr_result_rec_t *r)
{
    int n = s->nslow;
    if (n == GR_SCHED_SLOWEST && r->wall <= s->slow[n - 1].wall)
        return;
    int i = n < GR_SCHED_SLOWEST ? n : n - 1;
    while (i > 0 && s->slow[i - 1].wall < r->wall) {
        s->slow[i] = s->slow[i - 1];
        i--;
    }
    s->slow[i] = (gr_slow_task_t){.wall = r->wall, .def = f->def,
                                  .index = f->index, .key = f->key,
                                  .maxrss_kb = r->maxrss_kb};
    if (n < GR_SCHED_SLOWEST)
        s->nslow++;
}

static void describe (const gr_taskdef_t *d, const gr_result_rec_t *r, char *buf,
                      size_t len)
{
    char sig[32];
    if (r->flags & GR_RES_SPAWN)
        snprintf (buf, len, "could not start: %s", strerror (r->exit_code));
    else if (r->flags & GR_RES_TIMEOUT)
        snprintf (buf, len, "timeout after %gs", d->timeout);
    else if (r->flags & GR_RES_KILLED)
        snprintf (buf, len, "killed while draining");
    else if (r->signal)
        snprintf (buf, len, "killed by %s", gr_signal_name (r->signal, sig, sizeof (sig)));
    else
        snprintf (buf, len, "exit %d", r->exit_code);
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

int gr_sched_complete (gr_sched_t *s, double now, const gr_result_rec_t *r,
                       gr_outcome_t *out)
{
    uint32_t slot = (uint32_t)(r->id & 0xffffffffu);
    uint32_t gen = (uint32_t)(r->id >> 32);
    inflight_t *f;

    memset (out, 0, sizeof (*out));
    if (slot >= s->nslots || s->slots[slot].gen != gen || s->slots[slot].worker < 0) {
        out->kind = GR_OUTCOME_STALE;
        return 0;
    }
    f = &s->slots[slot];
    const gr_taskdef_t *d = &s->spec->tasks[f->def];
    def_state_t *ds = &s->defs[f->def];

    out->def = f->def;
    out->index = f->index;
    out->key = f->key;
    out->attempt = f->attempt;
    out->worker = f->worker;

    s->st.attempts++;
    s->st.busy_seconds += r->wall;
    s->st.cpu_seconds += r->utime + r->stime;
    if (r->flags & GR_RES_TIMEOUT)
        s->st.timeouts++;
    bool crash = r->signal && !(r->flags & (GR_RES_TIMEOUT | GR_RES_KILLED));
    if (crash) {
        s->st.crashes++;
        f->crashes++;
    }

    if (is_success (d, r)) {
        out->kind = GR_OUTCOME_DONE;
        s->st.done++;
        note_slow (s, f, r);
    }
    else {
        describe (d, r, out->reason, sizeof (out->reason));
        if (crash && f->crashes >= d->retry.crash_limit) {
            out->kind = GR_OUTCOME_POISON;
            s->st.poison++;
        }
        else if (f->attempt <= d->retry.max) {
            retry_ent_t e = {.index = f->index, .key = f->key, .def = f->def,
                             .attempt = f->attempt + 1, .crashes = f->crashes};
            out->kind = GR_OUTCOME_RETRY;
            out->delay = gr_backoff_delay (&d->retry, f->attempt,
                                           gr_rng_uniform (&s->rng));
            e.when = now + out->delay;
            heap_push (s, &e);
            ds->waiting++;
            s->st.waiting++;
            s->st.retries++;
        }
        else
            out->kind = GR_OUTCOME_FAILED;
        if (out->kind != GR_OUTCOME_RETRY) {
            s->st.failed++;
            ds->bad++;
            if (s->nfailures < GR_SCHED_FAILED_KEPT)
                s->failures[s->nfailures++] = *out;
        }
    }
    f->worker = -1;
    f->next_free = s->free_head;
    s->free_head = slot;
    ds->running--;
    s->st.running--;
    def_maybe_end (s, out->def);
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
