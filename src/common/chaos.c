#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chaos.h"
#include "hash.h"
#include "units.h"

static const char *const site_names[GR_CHAOS_NSITES] = {
    [GR_CHAOS_KILL_TASK] = "kill-task",
    [GR_CHAOS_KILL_WORKER] = "kill-worker",
    [GR_CHAOS_DELAY] = "delay",
    [GR_CHAOS_JOURNAL_EIO] = "journal-eio",
    [GR_CHAOS_JOURNAL_ENOSPC] = "journal-enospc",
    [GR_CHAOS_CKPT_EIO] = "ckpt-eio",
    [GR_CHAOS_CKPT_ENOSPC] = "ckpt-enospc",
    [GR_CHAOS_OUTPUT_EIO] = "output-eio",
    [GR_CHAOS_OUTPUT_ENOSPC] = "output-enospc",
};

/* The EIO site of each kind of write (its ENOSPC site is the next). */
static const gr_chaos_site_t io_eio[GR_CHAOS_NIO] = {
    [GR_CHAOS_IO_JOURNAL] = GR_CHAOS_JOURNAL_EIO,
    [GR_CHAOS_IO_CKPT] = GR_CHAOS_CKPT_EIO,
    [GR_CHAOS_IO_OUTPUT] = GR_CHAOS_OUTPUT_EIO,
};
_Static_assert (GR_CHAOS_JOURNAL_ENOSPC == GR_CHAOS_JOURNAL_EIO + 1 &&
                    GR_CHAOS_CKPT_ENOSPC == GR_CHAOS_CKPT_EIO + 1 &&
                    GR_CHAOS_OUTPUT_ENOSPC == GR_CHAOS_OUTPUT_EIO + 1,
                "each ENOSPC site follows its EIO site");

#define KNOWN "kill-task, kill-worker, delay, journal-eio, journal-enospc, ckpt-eio, " \
              "ckpt-enospc, output-eio, output-enospc and seed"
#define RATE_HINT "a probability from 0 to 1, like 0.01"

struct gr_chaos {
    gr_chaos_spec_t spec;
    gr_rng_t rng[GR_CHAOS_NSITES];
    uint64_t count[GR_CHAOS_NSITES]; /* atomic: read by any thread */
    int full[GR_CHAOS_NIO];          /* per gr_chaos_io_t: ENOSPC once the
                                        disk is "full"; atomic */
};

static struct gr_chaos state;
struct gr_chaos *gr__chaos;

const char *gr_chaos_site_name (gr_chaos_site_t site)
{
    return (unsigned)site < GR_CHAOS_NSITES ? site_names[site] : "?";
}

bool gr_chaos_spec_any (const gr_chaos_spec_t *spec)
{
    for (int i = 0; spec && i < GR_CHAOS_NSITES; i++)
        if (spec->rate[i] > 0)
            return true;
    return false;
}

/* A probability: a whole number or a decimal from 0 to 1, nothing after. */
static int parse_rate (const char *s, double *out)
{
    char *end;
    if (!*s || !(s[0] == '.' || (s[0] >= '0' && s[0] <= '9')))
        return -1;
    errno = 0;
    double v = strtod (s, &end);
    if (errno || *end || !isfinite (v) || v < 0 || v > 1)
        return -1;
    *out = v;
    return 0;
}

static int parse_item (char *item, gr_chaos_spec_t *s, bool *given, gr_error_t *errp)
{
    char *eq = strchr (item, '=');
    int site = -1;

    errno = EINVAL;
    if (!*item)
        return gr_errprintf (errp, "an empty item (two commas in a row, or one at an "
                             "end); give NAME=VALUE items separated by commas, NAME "
                             "one of " KNOWN);
    if (!eq)
        return gr_errprintf (errp, "item '%s' is not NAME=VALUE; NAME is one of " KNOWN
                             " (like kill-task=0.01)", item);
    *eq = '\0';
    const char *name = item, *val = eq + 1;
    if (strcmp (name, "seed") == 0)
        site = GR_CHAOS_NSITES;
    for (int i = 0; i < GR_CHAOS_NSITES && site < 0; i++)
        if (strcmp (name, site_names[i]) == 0)
            site = i;
    if (site < 0)
        return gr_errprintf (errp, "item '%s=%s': unknown fault '%s'; known: " KNOWN, name,
                             val, name);
    if (given[site])
        return gr_errprintf (errp, "item '%s=%s': %s is given twice", name, val, name);
    given[site] = true;
    if (site == GR_CHAOS_NSITES) {
        if (gr_parse_u64 (val, &s->seed) < 0) {
            errno = EINVAL;
            return gr_errprintf (errp, "item 'seed=%s': the seed must be a whole number "
                                 "from 0 to 2^64-1", val);
        }
        s->seeded = true;
        return 0;
    }
    if (site == GR_CHAOS_DELAY) {
        char *colon = strchr (val, ':');
        if (!colon)
            return gr_errprintf (errp, "item 'delay=%s': give delay=RATE:DURATION, like "
                                 "delay=0.05:20ms (RATE %s)", val, RATE_HINT);
        *colon = '\0';
        if (parse_rate (val, &s->rate[site]) < 0) {
            errno = EINVAL;
            return gr_errprintf (errp, "item 'delay=%s:%s': RATE must be %s", val, colon + 1,
                                 RATE_HINT);
        }
        if (gr_parse_duration (colon + 1, &s->delay) < 0) {
            errno = EINVAL;
            return gr_errprintf (errp, "item 'delay=%s:%s': '%s' is not a duration (like "
                                 "20ms, 1.5s or 2m)", val, colon + 1, colon + 1);
        }
        return 0;
    }
    if (parse_rate (val, &s->rate[site]) < 0) {
        errno = EINVAL;
        return gr_errprintf (errp, "item '%s=%s': the rate must be %s", name, val, RATE_HINT);
    }
    return 0;
}

int gr_chaos_parse (const char *text, gr_chaos_spec_t *spec, gr_error_t *errp)
{
    gr_chaos_spec_t s;
    bool given[GR_CHAOS_NSITES + 1] = {false};
    char buf[GR_CHAOS_SPEC_MAX + 1];

    memset (&s, 0, sizeof (s));
    if (!spec) {
        errno = EINVAL;
        return gr_errprintf (errp, "chaos spec: nowhere to put it");
    }
    if (!text)
        text = "";
    size_t n = strlen (text);
    if (n > GR_CHAOS_SPEC_MAX) {
        errno = EINVAL;
        return gr_errprintf (errp, "the spec is %zu characters long; at most %d", n,
                             GR_CHAOS_SPEC_MAX);
    }
    memcpy (buf, text, n + 1);
    if (n > 0 && strcmp (buf, "off") != 0) {
        for (char *p = buf;;) {
            char *comma = strchr (p, ',');
            if (comma)
                *comma = '\0';
            if (parse_item (p, &s, given, errp) < 0)
                return -1;
            if (!comma)
                break;
            p = comma + 1;
        }
    }
    *spec = s;
    return 0;
}

/* The shortest of %.15g, %.16g and %.17g that reads back as v. */
static int put_num (char *buf, size_t len, double v)
{
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf (buf, len, "%.*g", prec, v);
        if (n < 0 || (size_t)n >= len || strtod (buf, NULL) == v)
            break;
    }
    return n;
}

int gr_chaos_format (const gr_chaos_spec_t *spec, char *buf, size_t len)
{
    size_t off = 0;
    char num[40], dur[40];

    if (!spec || !buf) {
        errno = EINVAL;
        return -1;
    }
    for (int i = 0; i < GR_CHAOS_NSITES; i++) {
        if (!(spec->rate[i] > 0))
            continue;
        put_num (num, sizeof (num), spec->rate[i]);
        int n;
        if (i == GR_CHAOS_DELAY) {
            put_num (dur, sizeof (dur), spec->delay);
            n = snprintf (buf + off, len - off, "%s%s=%s:%ss", off ? "," : "", site_names[i],
                          num, dur);
        }
        else
            n = snprintf (buf + off, len - off, "%s%s=%s", off ? "," : "", site_names[i], num);
        if (n < 0 || (size_t)n >= len - off)
            goto full;
        off += (size_t)n;
    }
    if (spec->seeded) {
        int n = snprintf (buf + off, len - off, "%sseed=%" PRIu64, off ? "," : "", spec->seed);
        if (n < 0 || (size_t)n >= len - off)
            goto full;
        off += (size_t)n;
    }
    if (off == 0 && snprintf (buf, len, "off") >= (int)len)
        goto full;
    return 0;
full:
    errno = ENOSPC;
    return -1;
}

void gr_chaos_enable (const gr_chaos_spec_t *spec, int rank)
{
    gr__chaos = NULL;
    if (!gr_chaos_spec_any (spec))
        return;
    memset (&state, 0, sizeof (state));
    state.spec = *spec;
    /* Every site of every rank a stream of its own, all from the seed. */
    for (uint64_t i = 0; i < GR_CHAOS_NSITES; i++)
        gr_rng_seed (&state.rng[i],
                     spec->seed ^ gr_hash64_final ((uint64_t)(uint32_t)rank << 8 | i));
    gr__chaos = &state;
}

void gr_chaos_disable (void)
{
    gr__chaos = NULL;
}

const gr_chaos_spec_t *gr_chaos_current (void)
{
    return gr__chaos ? &gr__chaos->spec : NULL;
}

bool gr__chaos_hit (gr_chaos_site_t site)
{
    struct gr_chaos *c = gr__chaos;
    if (!c || (unsigned)site >= GR_CHAOS_NSITES)
        return false;
    double rate = c->spec.rate[site];
    if (!(rate > 0))
        return false;
    if (rate < 1 && gr_rng_uniform (&c->rng[site]) >= rate)
        return false;
    __atomic_fetch_add (&c->count[site], 1, __ATOMIC_RELAXED);
    return true;
}

int gr__chaos_io (gr_chaos_io_t io)
{
    struct gr_chaos *c = gr__chaos;
    if (!c || (unsigned)io >= GR_CHAOS_NIO)
        return 0;
    gr_chaos_site_t eio = io_eio[io];
    int err = __atomic_load_n (&c->full[io], __ATOMIC_RELAXED);
    if (err == 0) {
        if (gr__chaos_hit (eio + 1)) {
            err = ENOSPC;
            __atomic_store_n (&c->full[io], err, __ATOMIC_RELAXED);
        }
        else if (gr__chaos_hit (eio))
            err = EIO;
        else
            return 0;
    }
    errno = err;
    return -1;
}

double gr_chaos_uniform (gr_chaos_site_t site)
{
    struct gr_chaos *c = gr__chaos;
    if (!c || (unsigned)site >= GR_CHAOS_NSITES)
        return 0;
    return gr_rng_uniform (&c->rng[site]);
}

uint64_t gr_chaos_count (gr_chaos_site_t site)
{
    struct gr_chaos *c = gr__chaos;
    if (!c || (unsigned)site >= GR_CHAOS_NSITES)
        return 0;
    return __atomic_load_n (&c->count[site], __ATOMIC_RELAXED);
}
