/* The job spec: YAML through libyaml into gr_spec_t, validated in full
 * before any work starts.
 *
 * The YAML becomes a parse tree of our own (ytree.h), which refuses
 * aliases where they stand, caps depth and size, finds duplicate keys and
 * keeps every node's position.  The tree is then checked and turned into
 * gr_spec_t, and thrown away.
 *
 * Every error names FILE:LINE:COL (1-based), says what is wrong and,
 * after a semicolon, what to do.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "src/common/error.h"
#include "src/common/fs.h"
#include "src/common/hash.h"
#include "src/common/units.h"
#include "spec.h"
#include "spec_private.h"
#include "ytree.h"

/* ------------------------------------------------------------------ */
/* The parse. */

static const gr__ydoc_t spec_doc = {
    .noun = "spec",
    .max_depth = GR__SPEC_MAX_DEPTH,
    .max_nodes = GR__SPEC_MAX_NODES,
    .nodes_hint = "put long lists of values in a file: param",
    .alias_hint = ", or put keys shared by tasks under defaults:",
    .tab_hint = "YAML does not allow tabs for indentation; indent with spaces",
    .max_string = GR_SPEC_MAX_STRING,
    .max_string_name = " (GR_SPEC_MAX_STRING)",
};

/* Everything one parse needs. */
typedef struct pctx {
    gr__yparse_t y;        /* the tree, and where errors go */
    char *dir;             /* directory of the spec, for param files; NULL = cwd */
    const gr_spec_file_t *files; /* supplied param files (gr_spec_unpack) */
    size_t nfiles;
    bool use_files;
    gr_spec_t *spec;
    gr__ynode_t *defaults;
    gr__ynode_t **tnodes;     /* the mapping of each task */
    gr__ynode_t **after_keys; /* the after: key node each task used, or NULL */
    struct def_name *byname;  /* the tasks sorted by name, once all are named */
    const gr__ynode_t *action_key; /* command: or shell: of the task being read */
} pctx_t;

/* A task's name and id, to look names up by binary search: after: lists
 * may name tasks a million times in all. */
typedef struct def_name {
    const char *name;
    uint32_t id;
} def_name_t;

static int def_name_cmp (const void *a, const void *b)
{
    return strcmp (((const def_name_t *)a)->name, ((const def_name_t *)b)->name);
}

/* a, b and c joined into a new string, or NULL. */
static char *join3 (const char *a, const char *b, const char *c)
{
    size_t la = strlen (a), lb = strlen (b), lc = strlen (c);
    char *s = malloc (la + lb + lc + 1);

    if (s) {
        memcpy (s, a, la);
        memcpy (s + la, b, lb);
        memcpy (s + la + lb, c, lc + 1);
    }
    return s;
}

/* ------------------------------------------------------------------ */
/* Helpers over the tree. */

static bool valid_name (const char *s, bool ident)
{
    if (!*s)
        return false;
    if (ident && !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return false;
    for (; *s; s++) {
        char ch = *s;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')
            || ch == '_')
            continue;
        if (!ident && (ch == '.' || ch == '-'))
            continue;
        return false;
    }
    return true;
}

static int dup_string (pctx_t *c, const gr__ynode_t *n, const char *what, char **out)
{
    if (gr__ywant_string (&c->y, n, what) < 0)
        return -1;
    if (!(*out = strdup (n->str)))
        return gr__ynomem (&c->y);
    return 0;
}

static int get_duration (pctx_t *c, const gr__ynode_t *n, const char *what, double *out)
{
    char buf[64];

    if (n->type != GR__YSCALAR || gr__yis_null (n) || gr_parse_duration (n->str, out) < 0)
        return gr__yerr (&c->y, n,
                          "%s: expected a duration like 30, 30s, 5m or 1h30m, got %s; durations "
                          "are >= 0 with units ms, s, m, h or d (a bare number is seconds)",
                          what, gr__ydescribe (n, buf, sizeof (buf)));
    return 0;
}

static int get_uint (pctx_t *c, const gr__ynode_t *n, const char *what, uint64_t min,
                     uint64_t max, uint64_t *out)
{
    char buf[64];
    uint64_t v;

    if (n->type != GR__YSCALAR || gr_parse_u64 (n->str, &v) < 0 || v < min || v > max)
        return gr__yerr (&c->y, n, "%s: expected a whole number from %" PRIu64 " to %" PRIu64
                                   ", got %s; write a plain whole number, without units",
                          what, min, max, gr__ydescribe (n, buf, sizeof (buf)));
    *out = v;
    return 0;
}

static int get_size (pctx_t *c, const gr__ynode_t *n, const char *what, uint64_t min,
                     const char *hint, uint64_t *out)
{
    char buf[64];
    uint64_t v;

    if (n->type != GR__YSCALAR || gr_parse_size (n->str, &v) < 0 || v < min)
        return gr__yerr (&c->y, n, "%s: expected a size of at least %" PRIu64 " bytes like 512M, "
                                   "4G or 1.5GiB, got %s; %s",
                          what, min, gr__ydescribe (n, buf, sizeof (buf)), hint);
    *out = v;
    return 0;
}

/* A decimal integer (possibly negative) or a finite real number. */
static int parse_number (const char *s, double *d, long long *i, bool *integral)
{
    char *end;

    if (!*s)
        return -1;
    errno = 0;
    *i = strtoll (s, &end, 10);
    if (*end == '\0' && errno == 0 && end != s) {
        *integral = true;
        *d = (double)*i;
        return 0;
    }
    errno = 0;
    *d = strtod (s, &end);
    if (*end != '\0' || end == s || errno != 0 || !isfinite (*d))
        return -1;
    /* strtod also takes "inf", "nan" and hex; only plain decimals here. */
    for (const char *p = s; *p; p++) {
        if (!strchr ("0123456789+-.eE", *p))
            return -1;
    }
    *integral = false;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Templates. */

static const char *const builtin_vars[] = {"task", "index", "replica", "attempt", "run_dir",
                                           NULL};

static int check_template (pctx_t *c, const gr_taskdef_t *t, const gr__ynode_t *n,
                           const char *what)
{
    size_t pos = 0;
    gr__tpl_tok_t tok;

    for (;;) {
        int line = n->mark.line, col = n->mark.col;

        gr__tpl_next (n->str, &pos, &tok);
        if (tok.kind == GR__TPL_END)
            return 0;
        if (tok.kind == GR__TPL_TEXT)
            continue;
        if (n->coloff >= 0)
            col += n->coloff + (int)gr__yutf8_chars (n->str, tok.off);
        if (tok.kind == GR__TPL_ERROR) {
            if (strcmp (tok.why, "unbalanced '}'") == 0)
                return gr__yerr_at (&c->y, line, col,
                                     "unbalanced '}' in the %s of task '%s'; write }} for a "
                                     "literal brace",
                                     what, t->name);
            if (strcmp (tok.why, "unbalanced '{'") == 0)
                return gr__yerr_at (&c->y, line, col,
                                     "unbalanced '{' in the %s of task '%s'; close it as "
                                     "{name}, or write {{ for a literal brace",
                                     what, t->name);
            return gr__yerr_at (&c->y, line, col,
                                 "'%.*s' in the %s of task '%s' is not a template parameter "
                                 "(names hold letters, digits and '_'); write {{ and }} for "
                                 "literal braces",
                                 (int)tok.len, tok.s, what, t->name);
        }
        /* A VAR: a param of this task, or a built-in. */
        {
            char name[256];
            const char *words[GR_SPEC_MAX_PARAMS + sizeof (builtin_vars) / sizeof (*builtin_vars)];
            size_t nw = 0;
            const char *hint;
            char have[1024];
            size_t hl = 0;
            bool found = gr__tpl_builtin (tok.s, tok.len) >= 0;

            for (size_t i = 0; i < t->nparams && !found; i++) {
                if (strlen (t->params[i].name) == tok.len
                    && memcmp (t->params[i].name, tok.s, tok.len) == 0)
                    found = true;
            }
            if (found)
                continue;
            snprintf (name, sizeof (name), "%.*s", (int)tok.len, tok.s);
            have[0] = '\0';
            for (size_t i = 0; i < t->nparams; i++) {
                words[nw++] = t->params[i].name;
                if (hl < sizeof (have))
                    hl += (size_t)snprintf (have + hl, sizeof (have) - hl, "%s{%s}",
                                            i ? ", " : "", t->params[i].name);
            }
            for (size_t i = 0; builtin_vars[i]; i++)
                words[nw++] = builtin_vars[i];
            hint = gr__ysuggest (name, words, nw);
            return gr__yerr_at (&c->y, line, col,
                                 "undefined template parameter '{%s}' in the %s of task '%s'; "
                                 "%s%s%s%s task has %s%s{task}, {index}, {replica}, "
                                 "{attempt} and {run_dir}",
                                 name, what, t->name, hint ? "did you mean '{" : "",
                                 hint ? hint : "", hint ? "}'? " : "", hint ? "This" : "this",
                                 have,
                                 t->nparams ? " and the built-ins " : "the built-ins ");
        }
    }
}

/* The bytes of a template that no substitution changes: its text outside
 * {name} ({{ and }} count one byte each).  The template is well formed. */
static size_t tpl_fixed_len (const char *t)
{
    size_t pos = 0, n = 0;
    gr__tpl_tok_t tok;

    for (;;) {
        gr__tpl_next (t, &pos, &tok);
        if (tok.kind == GR__TPL_END || tok.kind == GR__TPL_ERROR)
            return n;
        if (tok.kind == GR__TPL_TEXT)
            n += tok.len;
    }
}

/* ------------------------------------------------------------------ */
/* Task keys. */

static const char *const top_keys[] = {"name", "defaults", "tasks", "grace", "quarantine",
                                       NULL};
static const char *const task_keys[] = {
    "name",      "command",  "shell",      "builtin",  "duration", "params",
    "combine",   "env",      "cwd",        "resources", "timeout", "kill_grace",
    "retries",   "success",  "after",      "stdout",   "stderr",   "replicas",
    "spread",    "retry_away", "require",  "prefer",   "locality", "kind",
    "ranks",     "ranks_per_node", "cpus_per_rank", "gpus_per_rank", "checkpoint_dir",
    "max_restarts", "grace", "max_output", NULL};
/* Keys of kind: group only. */
static const char *const group_keys[] = {"ranks", "ranks_per_node", "cpus_per_rank",
                                         "gpus_per_rank", "checkpoint_dir",
                                         "max_restarts", "grace", NULL};
static const char *const default_keys[] = {
    "command",  "shell",    "builtin",    "duration", "params",     "combine",
    "env",      "cwd",      "resources",  "timeout",  "kill_grace", "retries",
    "success",  "stdout",   "stderr",     "replicas", "spread",     "retry_away",
    "require",  "prefer",   "locality",   "max_output", NULL};
static const char *const quarantine_keys[] = {"failures", "window", "cooloff", "level", NULL};
static const char *const resource_keys[] = {"cpus", "gpus", "mem", NULL};
static const char *const retry_keys[] = {"max", "backoff", "backoff_max", "jitter",
                                         "crash_limit", NULL};
static const char *const param_kinds[] = {"range", "file", NULL};
static const char *const range_keys[] = {"from", "to", "step", NULL};

/* The value of key for a task: its own, else the default.  *keyp gets the
 * key node that held it. */
static gr__ynode_t *tget (pctx_t *c, const gr__ynode_t *tn, const char *key, gr__ynode_t **keyp)
{
    gr__ynode_t *v = gr__ymap_get (tn, key, keyp);
    if (!v)
        v = gr__ymap_get (c->defaults, key, keyp);
    return v;
}

/* Copy n strings, packed into one block that out[0] points to (see
 * spec_private.h). */
static char **pack_values (const char *const *src, const size_t *lens, size_t n)
{
    size_t total = 0;
    char **out, *block;

    for (size_t i = 0; i < n; i++)
        total += lens[i] + 1;
    if (!(out = calloc (n + 1, sizeof (*out))) || !(block = malloc (total ? total : 1))) {
        free (out);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        memcpy (block, src[i], lens[i]);
        block[lens[i]] = '\0';
        out[i] = block;
        block += lens[i] + 1;
    }
    return out;
}

static int param_list (pctx_t *c, gr_param_t *p, const gr__ynode_t *v)
{
    const char **src = NULL;
    size_t *lens = NULL, k = 0;
    char what[300];

    if (v->n == 0)
        return gr__yerr (&c->y, v, "param '%s' has an empty list of values; give it at least one "
                                   "value",
                          p->name);
    if (!(src = malloc (v->n * sizeof (*src))) || !(lens = malloc (v->n * sizeof (*lens))))
        goto nomem;
    snprintf (what, sizeof (what), "a value of param '%s'", p->name);
    for (const gr__ynode_t *e = v->first; e; e = e->next) {
        if (e->type != GR__YSCALAR) {
            gr__yerr (&c->y, e,
                       "%s is %s, but values must be scalars; quote values that start with "
                       "'{' or '['",
                       what, e->type == GR__YMAP ? "a mapping" : "a list");
            goto error;
        }
        /* An empty value is allowed here: it is a real argument. */
        if (strlen (e->str) != e->len || e->len > GR_SPEC_MAX_STRING) {
            gr__ywant_string (&c->y, e, what);
            goto error;
        }
        src[k] = e->str;
        lens[k++] = e->len;
    }
    if (!(p->values = pack_values (src, lens, k)))
        goto nomem;
    p->count = k;
    free (src);
    free (lens);
    return 0;
nomem:
    gr__ynomem (&c->y);
error:
    free (src);
    free (lens);
    return -1;
}

static int range_number (pctx_t *c, const gr__ynode_t *n, const char *pname, const char *which,
                         double *d, long long *i, bool *integral)
{
    char buf[64];

    if (n->type != GR__YSCALAR || parse_number (n->str, d, i, integral) < 0)
        return gr__yerr (&c->y, n, "range of param '%s': %s must be a number, got %s; write plain "
                                   "decimal numbers like 0.5 or -3",
                          pname, which,
                          gr__ydescribe (n, buf, sizeof (buf)));
    return 0;
}

static int param_range (pctx_t *c, gr_param_t *p, const gr__ynode_t *v)
{
    const gr__ynode_t *nf = NULL, *nt = NULL, *ns = NULL;
    double from, to, step = 1;
    long long ifrom, ito, istep = 1;
    bool if_, it, is = true;
    char buf[64];

    if (v->type == GR__YSEQ) {
        if (v->n < 2 || v->n > 3)
            return gr__yerr (&c->y, v, "range of param '%s' has %zu numbers; write [from, to] or "
                                       "[from, to, step]",
                              p->name, v->n);
        nf = v->first;
        nt = nf->next;
        ns = nt->next;
    }
    else if (v->type == GR__YMAP) {
        if (gr__ycheck_keys (&c->y, v, range_keys, "a range") < 0)
            return -1;
        nf = gr__ymap_get (v, "from", NULL);
        nt = gr__ymap_get (v, "to", NULL);
        ns = gr__ymap_get (v, "step", NULL);
        if (!nf || !nt)
            return gr__yerr (&c->y, v, "range of param '%s' needs from: and to:; add them (step: "
                                       "is optional and defaults to 1)",
                              p->name);
    }
    else
        return gr__yerr (&c->y, v, "range of param '%s': expected [from, to, step] or {from, to, "
                                   "step}, got %s; write e.g. range: [0, 1, 0.1]",
                          p->name, gr__ydescribe (v, buf, sizeof (buf)));
    if (range_number (c, nf, p->name, "from", &from, &ifrom, &if_) < 0
        || range_number (c, nt, p->name, "to", &to, &ito, &it) < 0
        || (ns && range_number (c, ns, p->name, "step", &step, &istep, &is) < 0))
        return -1;
    if (!(step > 0))
        return gr__yerr (&c->y, ns, "range of param '%s' has step %s; the step must be greater "
                                    "than 0",
                          p->name, ns->str);
    if (to < from)
        return gr__yerr (&c->y, nt, "range of param '%s' goes from %s down to %s; 'to' must not be "
                                    "less than 'from' (ranges count up)",
                          p->name, nf->str, nt->str);
    p->kind = GR_PARAM_RANGE;
    p->from = from;
    p->to = to;
    p->step = step;
    p->integral = if_ && it && is;
    if (p->integral) {
        /* Exact integer count; unsigned so that full int64 spans work. */
        uint64_t span = (uint64_t)ito - (uint64_t)ifrom;
        uint64_t steps = span / (uint64_t)istep;
        if (steps == UINT64_MAX)
            return gr__yerr (&c->y, v, "range of param '%s' has more than 2^64 values; narrow it",
                              p->name);
        p->ifrom = ifrom;
        p->istep = istep;
        p->count = steps + 1;
    }
    else {
        /* The 1e-9 absorbs rounding, so [0, 1, 0.1] ends at 1. */
        double steps = floor ((to - from) / step + 1e-9);
        if (!(steps < 18446744073709549568.0))
            return gr__yerr (&c->y, v, "range of param '%s' has more than 2^64 values; use a "
                                       "larger step",
                              p->name);
        p->ifrom = 0;
        p->istep = 0;
        p->count = (uint64_t)steps + 1;
    }
    return 0;
}

static int record_file (pctx_t *c, const char *path, const char *data, size_t len)
{
    gr_spec_t *s = c->spec;
    gr_spec_file_t *nf;

    for (size_t i = 0; i < s->nfiles; i++) {
        if (strcmp (s->files[i].path, path) == 0)
            return 0;
    }
    if (!(nf = realloc (s->files, (s->nfiles + 1) * sizeof (*nf))))
        return gr__ynomem (&c->y);
    s->files = nf;
    nf = &s->files[s->nfiles];
    if (!(nf->path = strdup (path)) || !(nf->data = malloc (len + 1))) {
        free (nf->path);
        return gr__ynomem (&c->y);
    }
    memcpy (nf->data, data, len);
    nf->data[len] = '\0';
    nf->len = len;
    s->nfiles++;
    return 0;
}

/* The next value of a param file's text at *pp: a line that is not blank,
 * without its trailing carriage return.  *linep counts the lines read.
 * False at the end. */
static bool next_line_value (const char **pp, const char *end, size_t *linep, const char **vp,
                             size_t *lenp)
{
    while (*pp < end) {
        const char *s = *pp;
        const char *nl = memchr (s, '\n', (size_t)(end - s));
        const char *e = nl ? nl : end;

        *pp = nl ? nl + 1 : end;
        (*linep)++;
        if (e > s && e[-1] == '\r')
            e--;
        for (const char *q = s; q < e; q++) {
            if (*q != ' ' && *q != '\t') {
                *vp = s;
                *lenp = (size_t)(e - s);
                return true;
            }
        }
    }
    return false;
}

static int param_file (pctx_t *c, gr_param_t *p, const gr__ynode_t *key, const gr__ynode_t *v)
{
    char *resolved = NULL, *data = NULL, *block;
    const char *pos, *val;
    size_t len = 0, k = 0, line = 0, vlen, bytes = 0;
    gr_error_t ferr;

    if (gr__ywant_string (&c->y, v, "file") < 0)
        return -1;
    if (v->str[0] == '/' || !c->dir)
        resolved = strdup (v->str);
    else
        resolved = join3 (c->dir, strcmp (c->dir, "/") == 0 ? "" : "/", v->str);
    if (!resolved)
        goto nomem;
    if (c->use_files) {
        const gr_spec_file_t *f = NULL;
        for (size_t i = 0; i < c->nfiles; i++) {
            if (strcmp (c->files[i].path, resolved) == 0)
                f = &c->files[i];
        }
        if (!f) {
            gr__yerr (&c->y, key, "param file '%s' of param '%s' was not shipped with the spec; "
                                  "pack the spec with gr_spec_pack",
                       resolved, p->name);
            goto error;
        }
        if (!(data = malloc (f->len + 1)))
            goto nomem;
        memcpy (data, f->data, f->len);
        data[f->len] = '\0';
        len = f->len;
    }
    else if (gr_read_file (resolved, GR_SPEC_MAX_PARAM_FILE, &data, &len, &ferr) < 0) {
        gr__yerr (&c->y, key, "cannot read the values of param '%s': %s; file: paths are relative "
                              "to the directory of the spec",
                   p->name, ferr.text);
        goto error;
    }
    if (memchr (data, '\0', len)) {
        gr__yerr (&c->y, key, "param file '%s' contains a NUL byte; it must be text, one value a "
                              "line",
                   resolved);
        goto error;
    }
    if (record_file (c, resolved, data, len) < 0)
        goto error;
    /* Two passes: count and check the values, then copy them, so that
     * nothing but the values themselves is allocated (see pack_values). */
    for (pos = data; next_line_value (&pos, data + len, &line, &val, &vlen);) {
        if (k == GR_SPEC_MAX_VALUES) {
            gr__yerr (&c->y, key, "param file '%s' of param '%s' holds more than %u values "
                                  "(line %zu is value %u); a param may have at most %u "
                                  "(GR_SPEC_MAX_VALUES): split the file over several params "
                                  "or runs",
                       resolved, p->name, GR_SPEC_MAX_VALUES, line, GR_SPEC_MAX_VALUES + 1,
                       GR_SPEC_MAX_VALUES);
            goto error;
        }
        if (vlen > GR_SPEC_MAX_STRING) {
            gr__yerr (&c->y, key, "line %zu of param file '%s' is longer than %u bytes "
                                  "(GR_SPEC_MAX_STRING); shorten it",
                       line, resolved, GR_SPEC_MAX_STRING);
            goto error;
        }
        k++;
        bytes += vlen + 1;
    }
    if (k == 0) {
        gr__yerr (&c->y, key, "param file '%s' of param '%s' holds no values; write one value a "
                              "line",
                   resolved, p->name);
        goto error;
    }
    if (!(p->values = calloc (k + 1, sizeof (*p->values))) || !(block = malloc (bytes))) {
        free (p->values);
        p->values = NULL;
        goto nomem;
    }
    k = 0;
    line = 0;
    for (pos = data; next_line_value (&pos, data + len, &line, &val, &vlen);) {
        memcpy (block, val, vlen);
        block[vlen] = '\0';
        p->values[k++] = block;
        block += vlen + 1;
    }
    p->kind = GR_PARAM_FILE;
    p->count = k;
    free (data);
    free (resolved);
    return 0;
nomem:
    gr__ynomem (&c->y);
error:
    free (data);
    free (resolved);
    return -1;
}

/* "a: 10 x b: 3 values" for a message; long lists end in "...". */
static const char *param_counts (const gr_taskdef_t *t, char *buf, size_t len)
{
    size_t n = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < t->nparams && n < len; i++) {
        int w = snprintf (buf + n, len - n, "%s%s: %" PRIu64, i ? " x " : "", t->params[i].name,
                          t->params[i].count);
        if (w < 0 || (size_t)w >= len - n) {
            if (len > 4)
                strcpy (buf + len - 4, "...");
            return buf;
        }
        n += (size_t)w;
    }
    if (n + 8 < len)
        strcpy (buf + n, " values");
    return buf;
}

static int parse_params (pctx_t *c, gr_taskdef_t *t, const gr__ynode_t *tn)
{
    gr__ynode_t *pkey = NULL, *ckey = NULL;
    const gr__ynode_t *pn = tget (c, tn, "params", &pkey);
    const gr__ynode_t *cn = tget (c, tn, "combine", &ckey);
    size_t i = 0;

    t->count = 1;
    if (cn) {
        static const char *const modes[] = {"product", "zip", NULL};
        const char *hint;
        if (gr__ywant_string (&c->y, cn, "combine") < 0)
            return -1;
        if (strcmp (cn->str, "zip") == 0)
            t->zip = true;
        else if (strcmp (cn->str, "product") != 0) {
            hint = gr__ysuggest (cn->str, modes, 2);
            return gr__yerr (&c->y, cn, "combine: '%s' is not a way to combine params; %s%s%s",
                              cn->str, hint ? "did you mean '" : "use product or zip",
                              hint ? hint : "", hint ? "'?" : "");
        }
    }
    if (!pn || gr__yis_null (pn))
        return 0;
    if (pn->type != GR__YMAP)
        return gr__yerr (&c->y, pn,
                         "params: expected a mapping of name: values, got %s; write e.g. "
                         "params: {x: [1, 2]}",
                         pn->type == GR__YSEQ ? "a list" : "a scalar");
    if (pn->n / 2 > GR_SPEC_MAX_PARAMS)
        return gr__yerr (&c->y, pkey, "task '%s' has %zu params, over the limit of %d "
                                      "(GR_SPEC_MAX_PARAMS); combine some into a file: param",
                          t->name, pn->n / 2, GR_SPEC_MAX_PARAMS);
    if (!(t->params = calloc (pn->n / 2 + 1, sizeof (*t->params))))
        return gr__ynomem (&c->y);
    for (const gr__ynode_t *k = pn->first; k; k = k->next->next, i++) {
        const gr__ynode_t *v = k->next;
        gr_param_t *p = &t->params[i];
        char buf[64];

        if (!valid_name (k->str, true))
            return gr__yerr (&c->y, k, "param name '%s' is not valid; names start with a letter or "
                                       "'_' and hold letters, digits and '_'",
                              k->str);
        if (gr__tpl_builtin (k->str, k->len) >= 0)
            return gr__yerr (&c->y, k, "param name '%s' is reserved for the built-in {%s}; rename "
                                       "the param",
                              k->str, k->str);
        if (!(p->name = strdup (k->str)))
            return gr__ynomem (&c->y);
        p->mark = k->mark;
        t->nparams++;
        if (v->type == GR__YSEQ) {
            p->kind = GR_PARAM_LIST;
            if (param_list (c, p, v) < 0)
                return -1;
        }
        else if (v->type == GR__YMAP) {
            gr__ynode_t *kk = NULL;
            const gr__ynode_t *rv, *fv;
            if (gr__ycheck_keys (&c->y, v, param_kinds, "a param") < 0)
                return -1;
            rv = gr__ymap_get (v, "range", NULL);
            fv = gr__ymap_get (v, "file", &kk);
            if (v->n != 2)
                return gr__yerr (&c->y, v,
                                 "param '%s' must have exactly one of range: or file:; split it "
                                 "into two params",
                                 p->name);
            if (rv && param_range (c, p, rv) < 0)
                return -1;
            if (fv && param_file (c, p, kk, fv) < 0)
                return -1;
        }
        else
            return gr__yerr (&c->y, v,
                             "param '%s' has %s, but a param holds several values; write a "
                             "list like [1, 2], {range: [from, to, step]} or {file: path}",
                             p->name, gr__ydescribe (v, buf, sizeof (buf)));
    }
    if (t->zip) {
        for (i = 1; i < t->nparams; i++) {
            if (t->params[i].count != t->params[0].count)
                return gr__yerr (&c->y, ckey ? ckey : pkey,
                                  "combine: zip needs params with the same number of values, "
                                  "but '%s' has %" PRIu64 " and '%s' has %" PRIu64
                                  "; make them equal or use combine: product",
                                  t->params[0].name, t->params[0].count, t->params[i].name,
                                  t->params[i].count);
        }
        t->count = t->nparams ? t->params[0].count : 1;
        if (t->count > GR_SPEC_MAX_TASKS)
            return gr__yerr (&c->y, pkey, "the params of task '%s' expand to %" PRIu64 " tasks "
                                          "(combine: zip of %" PRIu64 " values each), over the "
                                          "limit of %" PRIu64 " tasks in a run "
                                          "(GR_SPEC_MAX_TASKS); use fewer values, or split "
                                          "the sweep over several runs",
                              t->name, t->count, t->count, GR_SPEC_MAX_TASKS);
    }
    else {
        bool over = false;
        char counts[512];
        for (i = 0; i < t->nparams && !over; i++)
            over = __builtin_mul_overflow (t->count, t->params[i].count, &t->count);
        if (over)
            return gr__yerr (&c->y, pkey, "the params of task '%s' expand to more than 2^64 "
                                          "tasks (%s), over the limit of %" PRIu64 " tasks in "
                                          "a run (GR_SPEC_MAX_TASKS); use fewer values or "
                                          "combine: zip",
                              t->name, param_counts (t, counts, sizeof (counts)),
                              GR_SPEC_MAX_TASKS);
        if (t->count > GR_SPEC_MAX_TASKS)
            return gr__yerr (&c->y, pkey, "the params of task '%s' expand to %" PRIu64 " tasks "
                                          "(%s), over the limit of %" PRIu64 " tasks in a run "
                                          "(GR_SPEC_MAX_TASKS); use fewer values or combine: "
                                          "zip, or split the sweep over several runs",
                              t->name, t->count, param_counts (t, counts, sizeof (counts)),
                              GR_SPEC_MAX_TASKS);
    }
    return 0;
}

/* One program argument or environment string (of which extra bytes, like
 * "NAME=", are not in the node) whose fixed text alone is more than exec
 * can ever take; see GR_SPEC_MAX_ARG. */
static int check_arg_size (pctx_t *c, const gr_taskdef_t *t, const gr__ynode_t *n,
                           const char *what, size_t extra)
{
    size_t fixed = tpl_fixed_len (n->str) + extra;

    if (fixed <= GR_SPEC_MAX_ARG)
        return 0;
    return gr__yerr (&c->y, n, "the %s of task '%s' is %zu bytes before any substitution, more "
                               "than the %u bytes one argument or environment variable of a "
                               "program can hold (the kernel's MAX_ARG_STRLEN, less 1); pass "
                               "long values through a file",
                      what, t->name, fixed, GR_SPEC_MAX_ARG);
}

/* The command and its environment, as far as their fixed text goes, must
 * fit what exec can take on any Linux system; see GR_SPEC_MAX_COMMAND.
 * Pointers count as the kernel counts them. */
static int check_command_size (pctx_t *c, const gr_taskdef_t *t)
{
    size_t total = 0;

    if (!c->action_key)
        return 0;
    if (t->argv) {
        for (size_t i = 0; i < t->argc; i++)
            total += tpl_fixed_len (t->argv[i]) + 1 + sizeof (char *);
    }
    else if (t->shell)
        total += tpl_fixed_len (t->shell) + sizeof ("/bin/sh") + sizeof ("-c")
                 + 3 * sizeof (char *);
    for (size_t i = 0; i < t->nenv; i++)
        total += tpl_fixed_len (t->env[i]) + 1 + sizeof (char *);
    if (total <= GR_SPEC_MAX_COMMAND)
        return 0;
    return gr__yerr (&c->y, c->action_key,
                     "the command of task '%s' and its env: take at least %zu bytes before any "
                     "substitution, more than the %u bytes any Linux system lets a program's "
                     "arguments and environment take (ARG_MAX is at most 3/4 of 8 MiB); pass "
                     "long lists through a file",
                     t->name, total, GR_SPEC_MAX_COMMAND);
}

static int parse_action (pctx_t *c, gr_taskdef_t *t, const gr__ynode_t *tn)
{
    static const char *const acts[] = {"command", "shell", "builtin"};
    const gr__ynode_t *src = tn;
    const gr__ynode_t *an[3] = {NULL}, *ak[3] = {NULL};
    const gr__ynode_t *dn;
    gr__ynode_t *dk = NULL;
    int nact = 0, which = -1;
    char what[64];

    /* The action is one unit: a task that names its own does not inherit
     * any part of the default's. */
    for (int pass = 0; pass < 2 && nact == 0; pass++) {
        src = pass == 0 ? tn : c->defaults;
        for (int i = 0; i < 3; i++) {
            gr__ynode_t *k = NULL;
            if ((an[i] = gr__ymap_get (src, acts[i], &k))) {
                ak[i] = k;
                if (nact++ == 0)
                    which = i;
                else
                    return gr__yerr (&c->y, k, "task '%s' has both %s: and %s:; keep exactly one "
                                               "of command:, shell: and builtin:",
                                      t->name, acts[which], acts[i]);
            }
        }
    }
    if (nact == 0)
        return gr__yerr (&c->y, tn, "task '%s' has nothing to run; give it command: [prog, args], "
                                    "shell: \"...\" or builtin: noop",
                          t->name);
    if (which == 0) {
        const gr__ynode_t *v = an[0];
        size_t i = 0;
        if (v->type == GR__YSCALAR)
            return gr__yerr (&c->y, v, "command: must be a list of arguments, like [echo, hello], "
                                       "not a string; to run a shell command line use shell: "
                                       "instead");
        if (v->type != GR__YSEQ)
            return gr__yerr (&c->y, v,
                             "command: got a mapping; write a list of arguments like [echo, "
                             "hello], and quote arguments that contain ': '");
        if (v->n == 0)
            return gr__yerr (&c->y, v, "command: is empty; give at least the program to run");
        if (v->n > GR_SPEC_MAX_ARGV)
            return gr__yerr (&c->y, ak[0],
                             "command: of task '%s' has %zu arguments, over the limit "
                             "of %d (GR_SPEC_MAX_ARGV); pass long lists through a file",
                             t->name, v->n, GR_SPEC_MAX_ARGV);
        if (!(t->argv = calloc (v->n + 1, sizeof (char *))))
            return gr__ynomem (&c->y);
        for (const gr__ynode_t *e = v->first; e; e = e->next, i++) {
            snprintf (what, sizeof (what), "command argument %zu", i);
            if (e->type == GR__YMAP)
                return gr__yerr (&c->y, e, "command argument %zu is a mapping; quote arguments "
                                           "that start with '{' or contain ': ', e.g. \"{x}\"",
                                  i);
            if (e->type == GR__YSCALAR && e->plain && e->len == 0)
                return gr__yerr (&c->y, e, "command argument %zu is empty; write \"\" for an "
                                           "empty argument",
                                  i);
            if (e->type == GR__YSCALAR && !e->plain && e->len == 0) {
                if (!(t->argv[i] = strdup ("")))
                    return gr__ynomem (&c->y);
            }
            else if (dup_string (c, e, what, &t->argv[i]) < 0)
                return -1;
            t->argc++;
            if (check_template (c, t, e, what) < 0 || check_arg_size (c, t, e, what, 0) < 0)
                return -1;
        }
        c->action_key = ak[0];
    }
    else if (which == 1) {
        if (dup_string (c, an[1], "shell", &t->shell) < 0
            || check_template (c, t, an[1], "shell command") < 0
            || check_arg_size (c, t, an[1], "shell command", 0) < 0)
            return -1;
        c->action_key = ak[1];
    }
    else {
        if (gr__ywant_string (&c->y, an[2], "builtin") < 0)
            return -1;
        if (strcmp (an[2]->str, "noop") != 0)
            return gr__yerr (&c->y, an[2], "builtin: '%s' is not a builtin; the only one is noop",
                              an[2]->str);
        t->builtin = GR_BUILTIN_NOOP;
    }
    /* duration: belongs to builtin: noop; a default duration only applies
     * to noop tasks. */
    dn = gr__ymap_get (tn, "duration", &dk);
    if (!dn && t->builtin == GR_BUILTIN_NOOP)
        dn = gr__ymap_get (c->defaults, "duration", &dk);
    if (dn) {
        if (t->builtin != GR_BUILTIN_NOOP)
            return gr__yerr (&c->y, dk, "duration: only applies to builtin: noop, and task '%s' "
                                        "runs a %s; remove duration: (use timeout: to limit a "
                                        "command)",
                              t->name, which == 0 ? "command" : "shell command");
        if (get_duration (c, dn, "duration", &t->noop_duration) < 0)
            return -1;
    }
    return 0;
}

static int add_env (pctx_t *c, gr_taskdef_t *t, const gr__ynode_t *k, const gr__ynode_t *v)
{
    size_t klen = k->len;
    char *entry, what[300];

    if (!valid_name (k->str, true))
        return gr__yerr (&c->y, k, "env: '%s' is not a valid variable name; names start with a "
                                   "letter or '_' and hold letters, digits and '_'",
                          k->str);
    if (v->type == GR__YMAP)
        return gr__ywant_string (&c->y, v, "env value");
    if (v->type != GR__YSCALAR)
        return gr__yerr (&c->y, v, "env: the value of %s must be a string, not a list; join the "
                                   "values into one string",
                          k->str);
    if (strlen (v->str) != v->len)
        return gr__ywant_string (&c->y, v, "env value");
    snprintf (what, sizeof (what), "env variable %s", k->str);
    if (check_template (c, t, v, "env value") < 0
        || check_arg_size (c, t, v, what, klen + 1) < 0)
        return -1;
    if (!(entry = join3 (k->str, "=", gr__yis_null (v) ? "" : v->str)))
        return gr__ynomem (&c->y);
    /* A task's own entry replaces the default's in place. */
    for (size_t i = 0; i < t->nenv; i++) {
        if (strncmp (t->env[i], k->str, klen) == 0 && t->env[i][klen] == '=') {
            free (t->env[i]);
            t->env[i] = entry;
            return 0;
        }
    }
    t->env[t->nenv++] = entry;
    return 0;
}

static int parse_env (pctx_t *c, gr_taskdef_t *t, const gr__ynode_t *tn)
{
    const gr__ynode_t *dv = gr__ymap_get (c->defaults, "env", NULL);
    const gr__ynode_t *tv = gr__ymap_get (tn, "env", NULL);
    const gr__ynode_t *srcs[2] = {dv, tv};
    size_t n = 0;

    for (int i = 0; i < 2; i++) {
        if (!srcs[i] || gr__yis_null (srcs[i]))
            continue;
        if (srcs[i]->type != GR__YMAP)
            return gr__yerr (&c->y, srcs[i],
                             "env: expected a mapping of NAME: value, got %s; write e.g. env: "
                             "{OMP_NUM_THREADS: 4}",
                             srcs[i]->type == GR__YSEQ ? "a list" : "a scalar");
        n += srcs[i]->n / 2;
    }
    if (!n)
        return 0;
    if (!(t->env = calloc (n + 1, sizeof (char *))))
        return gr__ynomem (&c->y);
    for (int i = 0; i < 2; i++) {
        if (!srcs[i] || srcs[i]->type != GR__YMAP)
            continue;
        for (const gr__ynode_t *k = srcs[i]->first; k; k = k->next->next) {
            if (add_env (c, t, k, k->next) < 0)
                return -1;
        }
    }
    return 0;
}

static int parse_resources (pctx_t *c, gr_taskdef_t *t, const gr__ynode_t *tn)
{
    gr__ynode_t *key = NULL;
    const gr__ynode_t *r = tget (c, tn, "resources", &key);
    const gr__ynode_t *v;
    uint64_t u;

    t->cpus = 1;
    t->gpus = 0;
    t->mem = 0;
    t->resources_mark = key ? key->mark : t->mark;
    if (!r || gr__yis_null (r))
        return 0;
    if (r->type != GR__YMAP)
        return gr__yerr (&c->y, r, "resources: expected a mapping; write e.g. resources: {cpus: 2, "
                                   "gpus: 1, mem: 4G}");
    if (gr__ycheck_keys (&c->y, r, resource_keys, "resources") < 0)
        return -1;
    if ((v = gr__ymap_get (r, "cpus", NULL))) {
        if (get_uint (c, v, "resources.cpus", 1, UINT32_MAX, &u) < 0)
            return -1;
        t->cpus = (uint32_t)u;
    }
    if ((v = gr__ymap_get (r, "gpus", NULL))) {
        if (get_uint (c, v, "resources.gpus", 0, UINT32_MAX, &u) < 0)
            return -1;
        t->gpus = (uint32_t)u;
    }
    if ((v = gr__ymap_get (r, "mem", NULL))) {
        char buf[64];
        if (v->type != GR__YSCALAR || gr_parse_size (v->str, &t->mem) < 0)
            return gr__yerr (&c->y, v, "resources.mem: expected a size like 512M, 4G or 1.5GiB, "
                                       "got %s; sizes are bytes with K, M, G or T (binary)",
                              gr__ydescribe (v, buf, sizeof (buf)));
    }
    return 0;
}

static int parse_retries (pctx_t *c, gr_taskdef_t *t, const gr__ynode_t *tn)
{
    const gr__ynode_t *r = tget (c, tn, "retries", NULL);
    const gr__ynode_t *v;
    uint64_t u;

    t->retry.max = 0;
    t->retry.backoff = 1;
    t->retry.backoff_max = 300;
    t->retry.jitter = 0.5;
    t->retry.crash_limit = 3;
    if (!r)
        return 0;
    if (r->type == GR__YSCALAR) {
        if (get_uint (c, r, "retries", 0, UINT32_MAX, &u) < 0)
            return -1;
        t->retry.max = (uint32_t)u;
        return 0;
    }
    if (r->type != GR__YMAP)
        return gr__yerr (&c->y, r, "retries: expected a number of retries or a mapping {max, "
                                   "backoff, backoff_max, jitter, crash_limit}, got a list; write "
                                   "e.g. retries: 3 or retries: {max: 3, backoff: 10s}");
    if (gr__ycheck_keys (&c->y, r, retry_keys, "retries") < 0)
        return -1;
    if ((v = gr__ymap_get (r, "max", NULL))) {
        if (get_uint (c, v, "retries.max", 0, UINT32_MAX, &u) < 0)
            return -1;
        t->retry.max = (uint32_t)u;
    }
    if ((v = gr__ymap_get (r, "backoff", NULL))
        && get_duration (c, v, "retries.backoff", &t->retry.backoff) < 0)
        return -1;
    if ((v = gr__ymap_get (r, "backoff_max", NULL))
        && get_duration (c, v, "retries.backoff_max", &t->retry.backoff_max) < 0)
        return -1;
    if ((v = gr__ymap_get (r, "jitter", NULL))) {
        double d;
        long long ll;
        bool integral;
        char buf[64];
        if (v->type != GR__YSCALAR || parse_number (v->str, &d, &ll, &integral) < 0 || d < 0
            || d > 1)
            return gr__yerr (&c->y, v, "retries.jitter: expected a number from 0 to 1 (the "
                                       "fraction of each delay that is random), got %s; 0 means "
                                       "exact delays, 1 fully random ones",
                              gr__ydescribe (v, buf, sizeof (buf)));
        t->retry.jitter = d;
    }
    if ((v = gr__ymap_get (r, "crash_limit", NULL))) {
        if (get_uint (c, v, "retries.crash_limit", 1, UINT32_MAX, &u) < 0)
            return -1;
        t->retry.crash_limit = (uint32_t)u;
    }
    return 0;
}

static int parse_success (pctx_t *c, gr_taskdef_t *t, const gr__ynode_t *tn)
{
    const gr__ynode_t *s = tget (c, tn, "success", NULL);
    size_t n = 1, i = 0;
    uint64_t u;

    if (s && s->type == GR__YSEQ) {
        if (s->n == 0)
            return gr__yerr (&c->y, s, "success: is empty; list the exit codes that mean success, "
                                       "e.g. [0]");
        n = s->n;
    }
    else if (s && s->type != GR__YSCALAR)
        return gr__yerr (&c->y, s, "success: expected an exit code or a list of them, got a "
                                   "mapping; write e.g. success: [0, 3]");
    if (!(t->success = calloc (n, sizeof (int))))
        return gr__ynomem (&c->y);
    t->nsuccess = n;
    if (!s)
        return 0;
    if (s->type == GR__YSCALAR) {
        if (get_uint (c, s, "success", 0, 255, &u) < 0)
            return -1;
        t->success[0] = (int)u;
        return 0;
    }
    for (const gr__ynode_t *e = s->first; e; e = e->next) {
        if (get_uint (c, e, "success", 0, 255, &u) < 0)
            return -1;
        t->success[i++] = (int)u;
    }
    return 0;
}

static int parse_out (pctx_t *c, gr_taskdef_t *t, const gr__ynode_t *tn, bool err)
{
    const char *key = err ? "stderr" : "stdout";
    const gr__ynode_t *v = tget (c, tn, key, NULL);
    gr_out_mode_t *mode = err ? &t->err_mode : &t->out_mode;
    char **path = err ? &t->err_path : &t->out_path;
    char what[32];

    *mode = GR_OUT_CAPTURE;
    if (!v)
        return 0;
    snprintf (what, sizeof (what), "%s path", key);
    if (gr__ywant_string (&c->y, v, key) < 0)
        return -1;
    if (strcmp (v->str, "capture") == 0)
        *mode = GR_OUT_CAPTURE;
    else if (strcmp (v->str, "discard") == 0)
        *mode = GR_OUT_DISCARD;
    else if (err && strcmp (v->str, "stdout") == 0)
        *mode = GR_OUT_STDOUT;
    else {
        if (check_template (c, t, v, what) < 0)
            return -1;
        if (!(*path = strdup (v->str)))
            return gr__ynomem (&c->y);
        *mode = GR_OUT_FILE;
    }
    return 0;
}

static const gr_taskdef_t *find_def (const gr_spec_t *s, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (s->tasks[i].name && strcmp (s->tasks[i].name, name) == 0)
            return &s->tasks[i];
    }
    return NULL;
}

/* The task called name, among all of the spec's (c->byname). */
static const gr_taskdef_t *find_named_def (const pctx_t *c, const char *name)
{
    size_t lo = 0, hi = c->spec->ntasks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp (name, c->byname[mid].name);
        if (r == 0)
            return &c->spec->tasks[c->byname[mid].id];
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static int parse_after (pctx_t *c, gr_taskdef_t *t, const gr__ynode_t *tn)
{
    gr__ynode_t *key = NULL;
    const gr__ynode_t *a = gr__ymap_get (tn, "after", &key);
    const gr__ynode_t *e;
    size_t n;

    c->after_keys[t->id] = key;
    if (!a || gr__yis_null (a))
        return 0;
    if (a->type == GR__YMAP)
        return gr__yerr (&c->y, a, "after: expected a task name or a list of them, got a mapping; "
                                   "write e.g. after: [prep]");
    n = a->type == GR__YSEQ ? a->n : 1;
    if (!(t->after = calloc (n ? n : 1, sizeof (uint32_t))))
        return gr__ynomem (&c->y);
    /* A scalar's next is its sibling in the task mapping, not a list
     * element, so only lists are walked. */
    for (e = a->type == GR__YSEQ ? a->first : a; e; e = a->type == GR__YSEQ ? e->next : NULL) {
        const gr_taskdef_t *d;
        if (gr__ywant_string (&c->y, e, "after") < 0)
            return -1;
        if (strcmp (e->str, t->name) == 0)
            return gr__yerr (&c->y, e, "task '%s' lists itself in after:; a task cannot wait for "
                                       "itself, so remove it",
                              t->name);
        if (!(d = find_named_def (c, e->str))) {
            const char **names = malloc (c->spec->ntasks * sizeof (*names));
            const char *hint;
            int rc;
            if (!names)
                return gr__ynomem (&c->y);
            for (size_t k = 0; k < c->spec->ntasks; k++)
                names[k] = c->spec->tasks[k].name;
            hint = gr__ysuggest (e->str, names, c->spec->ntasks);
            rc = gr__yerr (&c->y, e,
                           "task '%s' is after '%s', which is not a task in this spec; %s%s%s",
                           t->name, e->str, hint ? "did you mean '" : "check the name",
                           hint ? hint : "", hint ? "'?" : "");
            free (names);
            return rc;
        }
        for (size_t k = 0; k < t->nafter; k++) {
            if (t->after[k] == d->id)
                return gr__yerr (&c->y, e, "task '%s' lists '%s' twice in after:; remove one",
                                  t->name, d->name);
        }
        t->after[t->nafter++] = d->id;
    }
    return 0;
}

/* Depth-first search along after: edges; a grey node met again closes a
 * cycle, which is reported with the whole loop spelled out. */
static int check_cycles (pctx_t *c)
{
    gr_spec_t *s = c->spec;
    unsigned char *color = NULL;    /* 0 white, 1 grey, 2 black */
    uint32_t *stack = NULL;         /* the path from the root */
    size_t *edge = NULL;            /* next after[] index per path entry */
    int rc = 0;

    if (!(color = calloc (s->ntasks, 1)) || !(stack = calloc (s->ntasks, sizeof (*stack)))
        || !(edge = calloc (s->ntasks, sizeof (*edge)))) {
        rc = gr__ynomem (&c->y);
        goto done;
    }
    for (size_t root = 0; root < s->ntasks && rc == 0; root++) {
        size_t depth = 0;
        if (color[root])
            continue;
        stack[depth] = (uint32_t)root;
        edge[depth++] = 0;
        color[root] = 1;
        while (depth > 0 && rc == 0) {
            const gr_taskdef_t *t = &s->tasks[stack[depth - 1]];
            if (edge[depth - 1] == t->nafter) {
                color[t->id] = 2;
                depth--;
                continue;
            }
            uint32_t next = t->after[edge[depth - 1]++];
            if (color[next] == 0) {
                color[next] = 1;
                stack[depth] = next;
                edge[depth++] = 0;
            }
            else if (color[next] == 1) {
                char path[768];
                size_t len = 0, start = 0;
                const gr__ynode_t *k;
                while (stack[start] != next)
                    start++;
                for (size_t i = start; i < depth && len < sizeof (path); i++)
                    len += (size_t)snprintf (path + len, sizeof (path) - len, "%s -> ",
                                             s->tasks[stack[i]].name);
                if (len < sizeof (path))
                    snprintf (path + len, sizeof (path) - len, "%s", s->tasks[next].name);
                k = c->after_keys[next];
                rc = gr__yerr (&c->y, k, "tasks %s form a cycle through after:; remove one of "
                                         "these dependencies",
                                path);
            }
        }
    }
done:
    free (color);
    free (stack);
    free (edge);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Placement. */

/* Indexed by gr_level_t. */
static const char *const level_words[] = {"zone", "rack", "node", NULL};

const char *gr_level_name (gr_level_t l)
{
    if (l < GR_LEVEL_ZONE || l > GR_LEVEL_NODE)
        return "none";
    return level_words[l];
}

static int get_level (pctx_t *c, const gr__ynode_t *n, const char *what, gr_level_t *out)
{
    const char *hint;

    if (gr__ywant_string (&c->y, n, what) < 0)
        return -1;
    /* none: replicas anywhere, retries anywhere (overrides a default). */
    if (strcmp (n->str, "none") == 0) {
        *out = GR_LEVEL_NONE;
        return 0;
    }
    for (int l = GR_LEVEL_ZONE; l <= GR_LEVEL_NODE; l++) {
        if (strcmp (n->str, level_words[l]) == 0) {
            *out = (gr_level_t)l;
            return 0;
        }
    }
    hint = gr__ysuggest (n->str, level_words, 3);
    return gr__yerr (&c->y, n, "%s: '%s' is not a failure-domain level; %s%s%s", what, n->str,
                     hint ? "did you mean '" : "use node, rack, zone or none", hint ? hint : "",
                     hint ? "'?" : "");
}

/* Placement words (label names and values, data set names) are matched
 * against the site as they are: a template could never match, so a brace
 * is refused, at its column, with that reason.  Names hold letters,
 * digits, '-', '.' and '_'; values anything printable but spaces and
 * commas, since a "data" label lists data sets separated by commas. */
static int check_place_word (pctx_t *c, const gr__ynode_t *n, const char *what,
                             const char *noun, bool name)
{
    const char *brace;

    if (gr__ywant_string (&c->y, n, what) < 0)
        return -1;
    if (n->len == 0)
        return gr__yerr (&c->y, n, "%s: the %s is empty; write one, or leave the key out", what,
                         noun);
    if ((brace = strchr (n->str, '{'))) {
        int col = n->mark.col;
        if (n->coloff >= 0)
            col += n->coloff + (int)gr__yutf8_chars (n->str, (size_t)(brace - n->str));
        return gr__yerr_at (&c->y, n->mark.line, col,
                            "%s: templates are not allowed here, but %s '%s' holds a '{'; "
                            "write the %s itself",
                            what, noun, n->str, noun);
    }
    for (const unsigned char *p = (const unsigned char *)n->str; *p; p++) {
        unsigned char ch = *p;
        if (name && !((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')
                      || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_'))
            return gr__yerr (&c->y, n, "%s: %s '%s' may only hold letters, digits, '-', '.' "
                                       "and '_'; use a label name of the site file",
                             what, noun, n->str);
        if (!name && (ch <= ' ' || ch == 0x7f || ch == ','))
            return gr__yerr (&c->y, n, "%s: %s '%s' may not hold spaces, commas or control "
                                       "characters; %s",
                             what, noun, n->str,
                             ch == ',' ? "list several values as [a, b]" : "remove them");
    }
    return 0;
}

/* require: or prefer: of a task (its own, else the default's) into
 * *outp and *np. */
static int parse_labels (pctx_t *c, const gr__ynode_t *tn, const char *key,
                         gr_label_match_t **outp, size_t *np, gr__ynode_t **keyp)
{
    const gr__ynode_t *m = tget (c, tn, key, keyp);
    char what[64], buf[64];

    if (!m || gr__yis_null (m))
        return 0;
    if (m->type != GR__YMAP)
        return gr__yerr (&c->y, m, "%s: expected a mapping of label: value or [values], got "
                                   "%s; write e.g. %s: {gpu: [a100, h100], zone: east}",
                         key, gr__ydescribe (m, buf, sizeof (buf)), key);
    if (m->n == 0)
        return 0;
    if (!(*outp = calloc (m->n / 2, sizeof (**outp))))
        return gr__ynomem (&c->y);
    for (const gr__ynode_t *k = m->first; k; k = k->next->next) {
        const gr__ynode_t *v = k->next;
        gr_label_match_t *lm = &(*outp)[*np];
        size_t nv = v->type == GR__YSEQ ? v->n : 1;

        snprintf (what, sizeof (what), "%s", key);
        if (check_place_word (c, k, what, "label name", true) < 0)
            return -1;
        /* Counted before it holds anything, so gr_spec_destroy() frees
         * what a failed one holds. */
        (*np)++;
        lm->mark = k->mark;
        if (!(lm->key = strdup (k->str)))
            return gr__ynomem (&c->y);
        if (v->type == GR__YMAP)
            return gr__yerr (&c->y, v, "%s: label '%s' has a mapping; give a value or a list of "
                                       "values, e.g. %s: {%s: [a, b]}",
                             key, k->str, key, k->str);
        if (v->type == GR__YSEQ && v->n == 0)
            return gr__yerr (&c->y, v, "%s: label '%s' has an empty list of values; give at "
                                       "least one value, or leave '%s' out",
                             key, k->str, k->str);
        if (!(lm->values = calloc (nv, sizeof (*lm->values))))
            return gr__ynomem (&c->y);
        snprintf (what, sizeof (what), "%s.%.40s", key, k->str);
        /* A scalar's next is its sibling in the mapping, so only lists
         * are walked. */
        for (const gr__ynode_t *e = v->type == GR__YSEQ ? v->first : v; e;
             e = v->type == GR__YSEQ ? e->next : NULL) {
            if (e->type != GR__YSCALAR)
                return gr__yerr (&c->y, e, "%s: a value of label '%s' is %s; values are single "
                                           "words like a100",
                                 key, k->str, gr__ykind (e));
            if (check_place_word (c, e, what, "label value", false) < 0)
                return -1;
            if (!(lm->values[lm->nvalues] = strdup (e->str)))
                return gr__ynomem (&c->y);
            lm->nvalues++;
        }
    }
    return 0;
}

static int parse_placement (pctx_t *c, gr_taskdef_t *t, const gr__ynode_t *tn)
{
    gr__ynode_t *rkey = NULL, *qkey = NULL, *pkey = NULL;  /* replicas, require, prefer */
    const gr__ynode_t *v;
    uint64_t u;

    t->replicas = 1;
    t->spread = GR_LEVEL_NONE;
    t->retry_away = GR_LEVEL_NONE;
    if ((v = tget (c, tn, "replicas", &rkey))) {
        char buf[64];
        if (v->type != GR__YSCALAR || gr_parse_u64 (v->str, &u) < 0 || u < 1
            || u > GR_SPEC_MAX_REPLICAS)
            return gr__yerr (&c->y, v, "replicas: expected a whole number from 1 to %d, got %s; "
                                       "give how many copies of each task to run (at most %d, "
                                       "GR_SPEC_MAX_REPLICAS)",
                             GR_SPEC_MAX_REPLICAS, gr__ydescribe (v, buf, sizeof (buf)),
                             GR_SPEC_MAX_REPLICAS);
        t->replicas = (uint32_t)u;
        /* The params are within GR_SPEC_MAX_TASKS, so this cannot wrap. */
        uint64_t combos = t->count;
        t->count *= t->replicas;
        if (t->count > GR_SPEC_MAX_TASKS)
            return gr__yerr (&c->y, rkey, "task '%s' with %" PRIu32 " replicas expands to %"
                                          PRIu64 " tasks (%" PRIu64 " combinations x %" PRIu32
                                          " replicas), over the limit of %" PRIu64 " tasks in "
                                          "a run (GR_SPEC_MAX_TASKS); use fewer values or fewer "
                                          "replicas",
                             t->name, t->replicas, t->count, combos, t->replicas,
                             GR_SPEC_MAX_TASKS);
    }
    if (t->replicas > 1)
        t->spread = GR_LEVEL_NODE;
    if ((v = tget (c, tn, "spread", NULL)) && get_level (c, v, "spread", &t->spread) < 0)
        return -1;
    if ((v = tget (c, tn, "retry_away", NULL))
        && get_level (c, v, "retry_away", &t->retry_away) < 0)
        return -1;
    if (parse_labels (c, tn, "require", &t->require, &t->nrequire, &qkey) < 0
        || parse_labels (c, tn, "prefer", &t->prefer, &t->nprefer, &pkey) < 0)
        return -1;
    if ((v = tget (c, tn, "locality", NULL))) {
        if (v->type == GR__YSEQ)
            return gr__yerr (&c->y, v, "locality: expected one data set name, got a list; a task "
                                       "names the one data set it reads most");
        if (check_place_word (c, v, "locality", "data set name", false) < 0)
            return -1;
        if (!(t->locality = strdup (v->str)))
            return gr__ynomem (&c->y);
    }
    t->place_mark = rkey ? rkey->mark : qkey ? qkey->mark : t->mark;
    return 0;
}

/* quarantine: true | false | {failures, window, cooloff, level}. */
static int parse_quarantine (pctx_t *c, const gr__ynode_t *root)
{
    gr_quarantine_t *q = &c->spec->quarantine;
    const gr__ynode_t *v = gr__ymap_get (root, "quarantine", NULL);
    const gr__ynode_t *e;
    char buf[64];
    uint64_t u;

    q->enabled = false;
    q->failures = 5;
    q->window = 600;
    q->cooloff = 600;
    q->level = GR_LEVEL_NODE;
    if (!v)
        return 0;
    if (v->type == GR__YSCALAR && !gr__yis_null (v)) {
        static const char *const yes[] = {"true", "True", "TRUE", NULL};
        static const char *const no[] = {"false", "False", "FALSE", NULL};
        for (size_t i = 0; yes[i]; i++) {
            if (strcmp (v->str, yes[i]) == 0) {
                q->enabled = true;
                return 0;
            }
            if (strcmp (v->str, no[i]) == 0)
                return 0;
        }
    }
    if (v->type != GR__YMAP)
        return gr__yerr (&c->y, v, "quarantine: expected true, false or a mapping {failures, "
                                   "window, cooloff, level}, got %s; write e.g. quarantine: "
                                   "{failures: 3, window: 5m}",
                         gr__ydescribe (v, buf, sizeof (buf)));
    if (gr__ycheck_keys (&c->y, v, quarantine_keys, "quarantine") < 0)
        return -1;
    q->enabled = true;
    if ((e = gr__ymap_get (v, "failures", NULL))) {
        if (get_uint (c, e, "quarantine.failures", 1, UINT32_MAX, &u) < 0)
            return -1;
        q->failures = (uint32_t)u;
    }
    if ((e = gr__ymap_get (v, "window", NULL))
        && get_duration (c, e, "quarantine.window", &q->window) < 0)
        return -1;
    if (e && !(q->window > 0))
        return gr__yerr (&c->y, e, "quarantine.window: must be longer than 0; it is how far "
                                   "back failures are counted, e.g. 10m");
    if ((e = gr__ymap_get (v, "cooloff", NULL))
        && get_duration (c, e, "quarantine.cooloff", &q->cooloff) < 0)
        return -1;
    if (e && !(q->cooloff > 0))
        return gr__yerr (&c->y, e, "quarantine.cooloff: must be longer than 0; it is how long "
                                   "a quarantined domain gets no work, e.g. 10m");
    if ((e = gr__ymap_get (v, "level", NULL))
        && get_level (c, e, "quarantine.level", &q->level) < 0)
        return -1;
    return 0;
}

/* kind: task | group, and the keys of a group (after resources: and
 * retries:, whose meaning it takes over). */
static int parse_group (pctx_t *c, gr_taskdef_t *t, const gr__ynode_t *tn)
{
    gr__ynode_t *kk = NULL, *k = NULL;
    const gr__ynode_t *v = gr__ymap_get (tn, "kind", &kk);
    uint64_t u;

    t->group_grace = -1;
    if (v) {
        if (v->type != GR__YSCALAR
            || (strcmp (v->str, "task") != 0 && strcmp (v->str, "group") != 0)) {
            char buf[64];
            return gr__yerr (&c->y, v, "kind: expected task or group, got %s; kind: group runs "
                                       "one program of ranks: processes with the torchrun "
                                       "environment",
                             gr__ydescribe (v, buf, sizeof (buf)));
        }
        t->group = strcmp (v->str, "group") == 0;
        t->group_mark = kk->mark;
    }
    if (!t->group) {
        for (size_t i = 0; group_keys[i]; i++) {
            if (gr__ymap_get (tn, group_keys[i], &k))
                return gr__yerr (&c->y, k, "%s: is a key of group tasks; add kind: group to "
                                           "task '%s', or remove %s:",
                                 group_keys[i], t->name, group_keys[i]);
        }
        return 0;
    }
    static const char *const not_group[][2] = {
        {"resources", "give cpus_per_rank: and gpus_per_rank: instead"},
        {"retries", "a group restarts as a whole: give max_restarts: instead"},
        {"replicas", "run more groups with params: instead"},
        {"spread", "a group's processes go where there is room for all of them"},
        {"builtin", "a group runs a program: give command: or shell:"},
    };
    for (size_t i = 0; i < sizeof (not_group) / sizeof (not_group[0]); i++) {
        if (gr__ymap_get (tn, not_group[i][0], &k))
            return gr__yerr (&c->y, k, "%s: does not apply to a group task ('%s'); %s",
                             not_group[i][0], t->name, not_group[i][1]);
    }
    if (t->builtin != GR_BUILTIN_NONE)
        return gr__yerr_at (&c->y, t->group_mark.line, t->group_mark.col,
                            "task '%s' is a group but its default action is builtin:; give "
                            "it command: or shell:", t->name);
    t->replicas = 1;
    t->spread = GR_LEVEL_NONE;
    if (!(v = gr__ymap_get (tn, "ranks", &k)))
        return gr__yerr_at (&c->y, t->group_mark.line, t->group_mark.col,
                            "group task '%s' has no ranks:; give the number of processes, "
                            "e.g. ranks: 2", t->name);
    if (get_uint (c, v, "ranks", 1, GR_SPEC_MAX_RANKS, &u) < 0)
        return -1;
    t->ranks = (uint32_t)u;
    if ((v = gr__ymap_get (tn, "ranks_per_node", NULL))) {
        if (get_uint (c, v, "ranks_per_node", 1, t->ranks, &u) < 0)
            return -1;
        t->ranks_per_node = (uint32_t)u;
    }
    t->cpus = 1;
    t->gpus = 0;
    t->mem = 0;
    t->resources_mark = t->group_mark;
    if ((v = gr__ymap_get (tn, "cpus_per_rank", &k))) {
        if (get_uint (c, v, "cpus_per_rank", 1, UINT32_MAX, &u) < 0)
            return -1;
        t->cpus = (uint32_t)u;
        t->resources_mark = k->mark;
    }
    if ((v = gr__ymap_get (tn, "gpus_per_rank", &k))) {
        if (get_uint (c, v, "gpus_per_rank", 0, UINT32_MAX, &u) < 0)
            return -1;
        t->gpus = (uint32_t)u;
        t->resources_mark = k->mark;
    }
    t->retry.max = 0;
    if ((v = gr__ymap_get (tn, "max_restarts", NULL))) {
        if (get_uint (c, v, "max_restarts", 0, 254, &u) < 0)
            return -1;
        t->retry.max = (uint32_t)u;
    }
    t->retry.backoff = 0;
    t->retry.backoff_max = 0;
    t->retry.jitter = 0;
    t->retry.crash_limit = UINT32_MAX;
    if ((v = gr__ymap_get (tn, "grace", NULL))
        && get_duration (c, v, "grace", &t->group_grace) < 0)
        return -1;
    if ((v = gr__ymap_get (tn, "checkpoint_dir", NULL))) {
        if (dup_string (c, v, "checkpoint_dir", &t->ckpt_dir) < 0
            || check_template (c, t, v, "checkpoint_dir") < 0)
            return -1;
        if (!*t->ckpt_dir)
            return gr__yerr (&c->y, v, "checkpoint_dir: is empty; give a directory, or leave "
                                       "the key out for RUN/ckpt/NAME");
    }
    return 0;
}

bool gr_spec_success (const gr_taskdef_t *d, int exit_code)
{
    for (size_t i = 0; i < d->nsuccess; i++) {
        if (d->success[i] == exit_code)
            return true;
    }
    return false;
}

static int parse_task (pctx_t *c, gr_taskdef_t *t, const gr__ynode_t *tn)
{
    const gr__ynode_t *v;

    c->action_key = NULL;
    if (parse_params (c, t, tn) < 0 || parse_placement (c, t, tn) < 0
        || parse_action (c, t, tn) < 0 || parse_env (c, t, tn) < 0
        || check_command_size (c, t) < 0)
        return -1;
    if ((v = tget (c, tn, "cwd", NULL))) {
        if (dup_string (c, v, "cwd", &t->cwd) < 0
            || check_template (c, t, v, "cwd") < 0)
            return -1;
    }
    if (parse_resources (c, t, tn) < 0)
        return -1;
    t->timeout = 0;
    t->kill_grace = 10;
    if ((v = tget (c, tn, "timeout", NULL)) && get_duration (c, v, "timeout", &t->timeout) < 0)
        return -1;
    if ((v = tget (c, tn, "kill_grace", NULL))
        && get_duration (c, v, "kill_grace", &t->kill_grace) < 0)
        return -1;
    if (parse_retries (c, t, tn) < 0 || parse_success (c, t, tn) < 0
        || parse_out (c, t, tn, false) < 0 || parse_out (c, t, tn, true) < 0
        || parse_after (c, t, tn) < 0 || parse_group (c, t, tn) < 0)
        return -1;
    t->max_output = 0;
    if ((v = tget (c, tn, "max_output", NULL))
        && get_size (c, v, "max_output", 1,
                     "it is how much of each stream of each attempt is kept; to keep no output "
                     "use stdout: discard",
                     &t->max_output) < 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Run identity. */

static uint64_t h_u64 (uint64_t h, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    return gr_hash64_update (h, b, 8);
}

static uint64_t h_str (uint64_t h, const char *s)
{
    if (!s)
        return h_u64 (h, UINT64_MAX);
    h = h_u64 (h, strlen (s));
    return gr_hash64_update (h, s, strlen (s));
}

static uint64_t h_dbl (uint64_t h, double d)
{
    char buf[40];
    snprintf (buf, sizeof (buf), "%.17g", d);
    return h_str (h, buf);
}

/* require: and prefer: are sets: neither the order of their labels nor
 * that of a label's values changes what they mean, so each goes in as the
 * sum of its members' hashes, which no order changes. */
static uint64_t h_labels (uint64_t h, const char *tag, const gr_label_match_t *m, size_t n)
{
    uint64_t sum = 0;

    for (size_t i = 0; i < n; i++) {
        uint64_t hm = h_str (GR_HASH64_INIT, m[i].key), vsum = 0;
        for (size_t k = 0; k < m[i].nvalues; k++)
            vsum += gr_hash64_final (h_str (GR_HASH64_INIT, m[i].values[k]));
        hm = h_u64 (hm, m[i].nvalues);
        hm = h_u64 (hm, vsum);
        sum += gr_hash64_final (hm);
    }
    h = h_str (h, tag);
    h = h_u64 (h, n);
    return h_u64 (h, sum);
}

/* The run identity hashes the parsed spec, not its text: comments, spacing,
 * quoting and the order of keys inside a task do not change it, while
 * anything that changes what runs does, including the content of param
 * files (their values, not their paths).  Every field goes in with a
 * length or fixed width so no two specs can collide by concatenation.
 * Like task keys it is stored in journals, so the scheme ("gridrun-spec-1")
 * must only ever change together with that tag.
 *
 * The placement keys came later: each goes in only when it differs from
 * its default, after a tag that starts with '+', so every spec that does
 * not use them keeps the identity it had before they existed.  No task
 * name holds a '+', so a tag cannot be mistaken for the next task. */
static uint64_t hash_spec (const gr_spec_t *s)
{
    uint64_t h = GR_HASH64_INIT;

    h = h_str (h, "gridrun-spec-1");
    h = h_str (h, s->name);
    h = h_dbl (h, s->grace);
    h = h_u64 (h, s->ntasks);
    for (size_t i = 0; i < s->ntasks; i++) {
        const gr_taskdef_t *t = &s->tasks[i];
        h = h_str (h, t->name);
        h = h_u64 (h, t->argc);
        for (size_t k = 0; k < t->argc; k++)
            h = h_str (h, t->argv[k]);
        h = h_str (h, t->shell);
        h = h_u64 (h, t->builtin);
        h = h_dbl (h, t->noop_duration);
        h = h_u64 (h, t->nenv);
        for (size_t k = 0; k < t->nenv; k++)
            h = h_str (h, t->env[k]);
        h = h_str (h, t->cwd);
        h = h_u64 (h, t->nparams);
        for (size_t k = 0; k < t->nparams; k++) {
            const gr_param_t *p = &t->params[k];
            h = h_str (h, p->name);
            h = h_u64 (h, p->kind);
            h = h_u64 (h, p->count);
            if (p->kind == GR_PARAM_RANGE) {
                h = h_u64 (h, p->integral);
                h = h_dbl (h, p->from);
                h = h_dbl (h, p->step);
            }
            else {
                for (uint64_t j = 0; j < p->count; j++)
                    h = h_str (h, p->values[j]);
            }
        }
        h = h_u64 (h, t->zip);
        h = h_u64 (h, t->cpus);
        h = h_u64 (h, t->gpus);
        h = h_u64 (h, t->mem);
        h = h_dbl (h, t->timeout);
        h = h_dbl (h, t->kill_grace);
        h = h_u64 (h, t->retry.max);
        h = h_dbl (h, t->retry.backoff);
        h = h_dbl (h, t->retry.backoff_max);
        h = h_dbl (h, t->retry.jitter);
        h = h_u64 (h, t->retry.crash_limit);
        h = h_u64 (h, t->nsuccess);
        for (size_t k = 0; k < t->nsuccess; k++)
            h = h_u64 (h, (uint64_t)t->success[k]);
        h = h_u64 (h, t->nafter);
        for (size_t k = 0; k < t->nafter; k++)
            h = h_u64 (h, t->after[k]);
        h = h_u64 (h, t->out_mode);
        h = h_str (h, t->out_path);
        h = h_u64 (h, t->err_mode);
        h = h_str (h, t->err_path);
        if (t->max_output) {
            h = h_str (h, "+max_output");
            h = h_u64 (h, t->max_output);
        }
        if (t->replicas != 1) {
            h = h_str (h, "+replicas");
            h = h_u64 (h, t->replicas);
        }
        if (t->spread != (t->replicas > 1 ? GR_LEVEL_NODE : GR_LEVEL_NONE)) {
            h = h_str (h, "+spread");
            h = h_u64 (h, (uint64_t)(t->spread + 1));
        }
        if (t->retry_away != GR_LEVEL_NONE) {
            h = h_str (h, "+retry_away");
            h = h_u64 (h, (uint64_t)(t->retry_away + 1));
        }
        if (t->nrequire)
            h = h_labels (h, "+require", t->require, t->nrequire);
        if (t->nprefer)
            h = h_labels (h, "+prefer", t->prefer, t->nprefer);
        if (t->locality) {
            h = h_str (h, "+locality");
            h = h_str (h, t->locality);
        }
        if (t->group) {
            h = h_str (h, "+group");
            h = h_u64 (h, t->ranks);
            h = h_u64 (h, t->ranks_per_node);
            h = h_dbl (h, t->group_grace);
            h = h_str (h, t->ckpt_dir);
        }
    }
    if (s->quarantine.enabled) {
        h = h_str (h, "+quarantine");
        h = h_u64 (h, s->quarantine.failures);
        h = h_dbl (h, s->quarantine.window);
        h = h_dbl (h, s->quarantine.cooloff);
        h = h_u64 (h, (uint64_t)(s->quarantine.level + 1));
    }
    return gr_hash64_final (h);
}

/* ------------------------------------------------------------------ */
/* The whole spec. */

static int parse_top (pctx_t *c)
{
    gr_spec_t *s = c->spec;
    const gr__ynode_t *root = c->y.root, *v, *tasks;
    gr__ynode_t *key = NULL, *tkey = NULL;
    size_t i = 0;

    if (!root || gr__yis_null (root))
        return gr__yerr_at (&c->y, 1, 1, "the spec is empty; a job spec needs at least name: and "
                                         "tasks:");
    if (root->type != GR__YMAP)
        return gr__yerr (&c->y, root, "the top level of a spec must be a mapping with name: and "
                                      "tasks:, not %s; start the file with name: <job> and tasks:",
                          root->type == GR__YSEQ ? "a list" : "a scalar");
    if (gr__ycheck_keys (&c->y, root, top_keys, "the spec") < 0)
        return -1;
    if (!(v = gr__ymap_get (root, "name", NULL)))
        return gr__yerr (&c->y, root,
                         "the spec has no name:; add name: <job name> at the top level");
    if (dup_string (c, v, "name", &s->name) < 0)
        return -1;
    if (!valid_name (s->name, false))
        return gr__yerr (&c->y, v, "job name '%s' may only hold letters, digits, '_', '.' and '-'; "
                                   "rename the job",
                          s->name);
    s->grace = 60;
    if ((v = gr__ymap_get (root, "grace", NULL)) && get_duration (c, v, "grace", &s->grace) < 0)
        return -1;
    if (parse_quarantine (c, root) < 0)
        return -1;
    if ((c->defaults = gr__ymap_get (root, "defaults", &key))) {
        if (gr__yis_null (c->defaults))
            c->defaults = NULL;
        else if (c->defaults->type != GR__YMAP)
            return gr__yerr (&c->y, c->defaults,
                             "defaults: expected a mapping of task keys; write e.g. defaults: "
                             "{timeout: 10m}");
        else {
            if ((v = gr__ymap_get (c->defaults, "name", &key)))
                return gr__yerr (&c->y, key, "name: cannot be a default; each task names itself");
            if ((v = gr__ymap_get (c->defaults, "after", &key)))
                return gr__yerr (&c->y, key, "after: cannot be a default, since a task cannot be "
                                             "after itself; put after: on the tasks that wait");
            if ((v = gr__ymap_get (c->defaults, "quarantine", &key)))
                return gr__yerr (&c->y, key, "quarantine: cannot be a default, since it applies "
                                             "to the whole job; move it to the top level of "
                                             "the spec");
            if (gr__ycheck_keys (&c->y, c->defaults, default_keys, "defaults") < 0)
                return -1;
        }
    }
    if (!(tasks = gr__ymap_get (root, "tasks", &tkey)))
        return gr__yerr (&c->y, root,
                         "the spec has no tasks:; add a list of tasks, each with name: "
                         "and command:");
    if (tasks->type != GR__YSEQ)
        return gr__yerr (&c->y, tasks, "tasks: expected a list of tasks, got %s; start each task "
                                       "with '- ' on its own line",
                          tasks->type == GR__YMAP ? "a mapping" : "a scalar");
    if (tasks->n == 0)
        return gr__yerr (&c->y, tasks, "tasks: is empty; list at least one task");
    if (tasks->n > GR_SPEC_MAX_TASKDEFS)
        return gr__yerr (&c->y, tkey, "the spec has %zu tasks, over the limit of %d "
                                      "(GR_SPEC_MAX_TASKDEFS); use params to expand one task into "
                                      "many",
                          tasks->n, GR_SPEC_MAX_TASKDEFS);
    if (!(s->tasks = calloc (tasks->n, sizeof (*s->tasks)))
        || !(c->tnodes = calloc (tasks->n, sizeof (*c->tnodes)))
        || !(c->after_keys = calloc (tasks->n, sizeof (*c->after_keys))))
        return gr__ynomem (&c->y);
    /* First pass: names, so that after: can refer to any task. */
    for (gr__ynode_t *tn = tasks->first; tn; tn = tn->next, i++) {
        gr_taskdef_t *t = &s->tasks[i];
        const gr_taskdef_t *dup;
        gr__ynode_t *nk = NULL;

        if (tn->type != GR__YMAP)
            return gr__yerr (&c->y, tn, "task %zu is not a mapping; each task is a mapping with "
                                        "name: and command:",
                              i + 1);
        c->tnodes[i] = tn;
        t->id = (uint32_t)i;
        t->mark = tn->mark;
        /* Counted before anything is allocated for it, so that
         * gr_spec_destroy() frees what a failed task holds. */
        s->ntasks = i + 1;
        if (gr__ymap_get (tn, "quarantine", &nk))
            return gr__yerr (&c->y, nk, "quarantine: is a job key, not a task key; move it to "
                                        "the top level of the spec");
        if (gr__ycheck_keys (&c->y, tn, task_keys, "a task") < 0)
            return -1;
        if (!(v = gr__ymap_get (tn, "name", &nk)))
            return gr__yerr (&c->y, tn, "task %zu has no name:; give every task a unique name:",
                              i + 1);
        if (dup_string (c, v, "name", &t->name) < 0)
            return -1;
        if (!valid_name (t->name, false))
            return gr__yerr (&c->y, v, "task name '%s' may only hold letters, digits, '_', '.' and "
                                       "'-'; rename the task",
                              t->name);
        if ((dup = find_def (s, i, t->name)))
            return gr__yerr (&c->y, v, "duplicate task name '%s' (first at line %d); task names "
                                       "must be unique",
                              t->name, dup->mark.line);
    }
    if (!(c->byname = malloc ((s->ntasks ? s->ntasks : 1) * sizeof (*c->byname))))
        return gr__ynomem (&c->y);
    for (i = 0; i < s->ntasks; i++)
        c->byname[i] = (def_name_t){.name = s->tasks[i].name, .id = (uint32_t)i};
    qsort (c->byname, s->ntasks, sizeof (*c->byname), def_name_cmp);
    for (i = 0; i < s->ntasks; i++) {
        if (parse_task (c, &s->tasks[i], c->tnodes[i]) < 0)
            return -1;
    }
    if (check_cycles (c) < 0)
        return -1;
    /* Each definition is within the limit, so the sum cannot wrap. */
    s->total = 0;
    for (i = 0; i < s->ntasks; i++) {
        const gr_taskdef_t *t = &s->tasks[i];
        if (s->total + t->count > GR_SPEC_MAX_TASKS)
            return gr__yerr_at (&c->y, t->mark.line, t->mark.col,
                                 "the tasks of the spec add up to more than %" PRIu64 " "
                                 "(GR_SPEC_MAX_TASKS): %" PRIu64 " before task '%s', which "
                                 "has %" PRIu64 "; split the work over several runs",
                                 GR_SPEC_MAX_TASKS, s->total, t->name, t->count);
        s->total += t->count;
    }
    s->hash = hash_spec (s);
    return 0;
}

int gr_spec_parse (const char *text, size_t len, const char *name,
                   const gr_spec_file_t *files, size_t nfiles, gr_spec_t **specp,
                   gr_error_t *errp)
{
    pctx_t c = {0};
    gr_spec_t *s = NULL;
    const char *slash;

    if (!text || !name || !specp) {
        errno = EINVAL;
        return gr_errprintf (errp, "gr_spec_parse: invalid arguments");
    }
    c.y.doc = &spec_doc;
    c.y.file = name;
    c.y.errp = errp;
    c.files = files;
    c.nfiles = nfiles;
    c.use_files = files != NULL;
    if (len > GR_SPEC_MAX_BYTES) {
        errno = EFBIG;
        return gr_errprintf_at (errp, name, 1, 1,
                                "the spec is %zu bytes, over the limit of %u "
                                "(GR_SPEC_MAX_BYTES); put long value lists in file: "
                                "params",
                                len, GR_SPEC_MAX_BYTES);
    }
    if ((slash = strrchr (name, '/'))) {
        size_t dl = (size_t)(slash - name);
        if (!(c.dir = strndup (name, dl ? dl : 1)))
            goto nomem;
    }
    if (!(s = calloc (1, sizeof (*s))) || !(s->path = strdup (name))
        || !(s->text = malloc (len + 1)))
        goto nomem;
    memcpy (s->text, text, len);
    s->text[len] = '\0';
    s->textlen = len;
    c.spec = s;
    if (gr__ybuild (&c.y, s->text, len) < 0 || parse_top (&c) < 0)
        goto error;
    gr__yfree (&c.y);
    free (c.tnodes);
    free (c.after_keys);
    free (c.byname);
    free (c.dir);
    *specp = s;
    return 0;
nomem:
    gr__ynomem (&c.y);
error:
    gr__yfree (&c.y);
    free (c.tnodes);
    free (c.after_keys);
    free (c.byname);
    free (c.dir);
    gr_spec_destroy (s);
    if (errno == 0)
        errno = EINVAL;
    return -1;
}

int gr_spec_load (const char *path, gr_spec_t **specp, gr_error_t *errp)
{
    char *text = NULL;
    size_t len = 0;
    gr_error_t ferr;
    int rc;

    if (!path || !specp) {
        errno = EINVAL;
        return gr_errprintf (errp, "gr_spec_load: invalid arguments");
    }
    if (gr_read_file (path, GR_SPEC_MAX_BYTES, &text, &len, &ferr) < 0) {
        struct stat st;
        if (errno == EFBIG && stat (path, &st) == 0 && S_ISREG (st.st_mode))
            return gr_errprintf (errp, "%s: the spec is %jd bytes, over the limit of %u bytes "
                                       "(16 MiB, GR_SPEC_MAX_BYTES); put long value lists in "
                                       "file: params",
                                 path, (intmax_t)st.st_size, GR_SPEC_MAX_BYTES);
        if (errno == EFBIG)
            return gr_errprintf (errp, "%s: the spec is larger than %u bytes "
                                       "(16 MiB, GR_SPEC_MAX_BYTES); put long value lists in "
                                       "file: params",
                                 path, GR_SPEC_MAX_BYTES);
        return gr_errprintf (errp, "%s: cannot read the spec: %s", path, ferr.text);
    }
    rc = gr_spec_parse (text, len, path, NULL, 0, specp, errp);
    free (text);
    return rc;
}

static void free_labels (gr_label_match_t *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free (m[i].key);
        for (size_t k = 0; k < m[i].nvalues; k++)
            free (m[i].values[k]);
        free (m[i].values);
    }
    free (m);
}

void gr_spec_destroy (gr_spec_t *s)
{
    int saved = errno;

    if (!s)
        return;
    for (size_t i = 0; i < s->ntasks; i++) {
        gr_taskdef_t *t = &s->tasks[i];
        free (t->name);
        if (t->argv) {
            for (size_t k = 0; t->argv[k]; k++)
                free (t->argv[k]);
            free (t->argv);
        }
        free (t->shell);
        if (t->env) {
            for (size_t k = 0; t->env[k]; k++)
                free (t->env[k]);
            free (t->env);
        }
        free (t->cwd);
        for (size_t k = 0; k < t->nparams; k++) {
            free (t->params[k].name);
            if (t->params[k].values)
                free (t->params[k].values[0]);
            free (t->params[k].values);
        }
        free (t->params);
        free (t->success);
        free (t->after);
        free (t->out_path);
        free (t->err_path);
        free_labels (t->require, t->nrequire);
        free_labels (t->prefer, t->nprefer);
        free (t->locality);
        free (t->ckpt_dir);
    }
    free (s->tasks);
    for (size_t i = 0; i < s->nfiles; i++) {
        free (s->files[i].path);
        free (s->files[i].data);
    }
    free (s->files);
    free (s->path);
    free (s->name);
    free (s->text);
    free (s);
    errno = saved;
}

/* ------------------------------------------------------------------ */
/* Shipping the spec to other ranks. */

/* Layout, integers as 8 little-endian bytes:
 *   "GRSPEC1\0", len(path), path, len(text), text, nfiles,
 *   then for each file len(path), path, len(data), data.
 * The receiver reparses, so both sides validate the same input the same
 * way and end with identical specs. */
static const char pack_magic[8] = "GRSPEC1";

static unsigned char *put_u64 (unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        *p++ = (unsigned char)(v >> (8 * i));
    return p;
}

static unsigned char *put_bytes (unsigned char *p, const void *d, size_t n)
{
    p = put_u64 (p, n);
    if (n)
        memcpy (p, d, n);
    return p + n;
}

int gr_spec_pack (const gr_spec_t *s, void **bufp, size_t *lenp)
{
    size_t len;
    unsigned char *buf, *p;

    if (!s || !bufp || !lenp) {
        errno = EINVAL;
        return -1;
    }
    len = 8 + 8 + strlen (s->path) + 8 + s->textlen + 8;
    for (size_t i = 0; i < s->nfiles; i++)
        len += 16 + strlen (s->files[i].path) + s->files[i].len;
    if (!(buf = malloc (len)))
        return -1;
    memcpy (buf, pack_magic, 8);
    p = put_bytes (buf + 8, s->path, strlen (s->path));
    p = put_bytes (p, s->text, s->textlen);
    p = put_u64 (p, s->nfiles);
    for (size_t i = 0; i < s->nfiles; i++) {
        p = put_bytes (p, s->files[i].path, strlen (s->files[i].path));
        p = put_bytes (p, s->files[i].data, s->files[i].len);
    }
    *bufp = buf;
    *lenp = len;
    return 0;
}

typedef struct reader {
    const unsigned char *p;
    size_t left;
} reader_t;

static int get_u64 (reader_t *r, uint64_t *v)
{
    if (r->left < 8)
        return -1;
    *v = 0;
    for (int i = 0; i < 8; i++)
        *v |= (uint64_t)r->p[i] << (8 * i);
    r->p += 8;
    r->left -= 8;
    return 0;
}

static int get_bytes (reader_t *r, const char **d, size_t *n)
{
    uint64_t v;
    if (get_u64 (r, &v) < 0 || v > r->left)
        return -1;
    *d = (const char *)r->p;
    *n = (size_t)v;
    r->p += v;
    r->left -= v;
    return 0;
}

int gr_spec_unpack (const void *buf, size_t len, gr_spec_t **specp, gr_error_t *errp)
{
    reader_t r = {buf, len};
    const char *path, *text;
    size_t plen, tlen;
    uint64_t nfiles;
    gr_spec_file_t *files = NULL;
    gr_spec_file_t none;
    char *name = NULL;
    int rc = -1;

    if (!buf || !specp || len < 8 || memcmp (buf, pack_magic, 8) != 0)
        goto bad;
    r.p += 8;
    r.left -= 8;
    if (get_bytes (&r, &path, &plen) < 0 || get_bytes (&r, &text, &tlen) < 0
        || get_u64 (&r, &nfiles) < 0 || nfiles > r.left / 16)
        goto bad;
    if (!(name = strndup (path, plen)))
        goto nomem;
    if (nfiles && !(files = calloc (nfiles, sizeof (*files))))
        goto nomem;
    for (uint64_t i = 0; i < nfiles; i++) {
        const char *fp, *fd;
        size_t fpl, fdl;
        if (get_bytes (&r, &fp, &fpl) < 0 || get_bytes (&r, &fd, &fdl) < 0)
            goto bad;
        if (!(files[i].path = strndup (fp, fpl)))
            goto nomem;
        files[i].data = (char *)fd;
        files[i].len = fdl;
    }
    if (r.left != 0)
        goto bad;
    /* Files are always passed, even none, so the receiver never reads the
     * disk: it must see exactly what the sender saw. */
    memset (&none, 0, sizeof (none));
    rc = gr_spec_parse (text, tlen, name, files ? files : &none, (size_t)nfiles, specp,
                        errp);
    goto done;
bad:
    errno = EINVAL;
    gr_errprintf (errp, "gr_spec_unpack: the packed spec is damaged or truncated");
    goto done;
nomem:
    errno = ENOMEM;
    gr_errprintf (errp, "gr_spec_unpack: out of memory");
done:
    if (files) {
        for (uint64_t i = 0; i < nfiles; i++)
            free (files[i].path);
        free (files);
    }
    free (name);
    return rc;
}

/* ------------------------------------------------------------------ */

const gr_taskdef_t *gr_spec_find (const gr_spec_t *spec, const char *name)
{
    if (!spec || !name)
        return NULL;
    return find_def (spec, spec->ntasks, name);
}

int gr_spec_check_resources (const gr_spec_t *spec, uint32_t max_cpus, uint32_t max_gpus,
                             uint64_t max_mem, gr_error_t *errp)
{
    if (!spec) {
        errno = EINVAL;
        return gr_errprintf (errp, "gr_spec_check_resources: no spec");
    }
    for (size_t i = 0; i < spec->ntasks; i++) {
        const gr_taskdef_t *t = &spec->tasks[i];
        const gr_mark_t *m = &t->resources_mark;

        if (t->cpus > max_cpus || t->gpus > max_gpus || (max_mem != 0 && t->mem > max_mem))
            errno = EINVAL;
        if (t->cpus > max_cpus)
            return gr_errprintf_at (errp, spec->path, m->line, m->col,
                                    "task '%s' asks for %" PRIu32 " cpus but the largest "
                                    "worker has %" PRIu32 "; lower resources.cpus or give "
                                    "workers more cpus (--cpus-per-worker)",
                                    t->name, t->cpus, max_cpus);
        if (t->gpus > max_gpus)
            return gr_errprintf_at (errp, spec->path, m->line, m->col,
                                    "task '%s' asks for %" PRIu32 " gpus but the largest "
                                    "worker has %" PRIu32 "; lower resources.gpus or give "
                                    "workers more gpus (--gpus-per-worker)",
                                    t->name, t->gpus, max_gpus);
        if (max_mem != 0 && t->mem > max_mem)
            return gr_errprintf_at (errp, spec->path, m->line, m->col,
                                    "task '%s' asks for %" PRIu64 " bytes of memory but "
                                    "the largest worker has %" PRIu64 "; lower "
                                    "resources.mem or give workers more memory "
                                    "(--mem-per-worker)",
                                    t->name, t->mem, max_mem);
    }
    return 0;
}
