/* Lazy expansion of task definitions into tasks.
 *
 * The master selects and keys tasks at up to a few hundred thousand a
 * second, so nothing here allocates once a gr_expand_t has grown to fit the
 * largest definition: values point into the spec or into fixed slots, and
 * rendered strings go into one arena that is reused from task to task.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/common/error.h"
#include "src/common/hash.h"
#include "spec.h"
#include "spec_private.h"

static const char *const builtin_names[] = {
    [GR__BUILTIN_TASK] = "task",
    [GR__BUILTIN_INDEX] = "index",
    [GR__BUILTIN_ATTEMPT] = "attempt",
    [GR__BUILTIN_RUN_DIR] = "run_dir",
    [GR__BUILTIN_REPLICA] = "replica",
};

int gr__tpl_builtin (const char *name, size_t len)
{
    for (int i = 0; i < (int)(sizeof (builtin_names) / sizeof (builtin_names[0])); i++) {
        if (strlen (builtin_names[i]) == len && memcmp (builtin_names[i], name, len) == 0)
            return i;
    }
    return -1;
}

static inline bool is_name_start (char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static inline bool is_name_char (char c)
{
    return is_name_start (c) || (c >= '0' && c <= '9');
}

void gr__tpl_next (const char *t, size_t *pos, gr__tpl_tok_t *tok)
{
    size_t p = *pos;

    tok->off = p;
    tok->why = NULL;
    if (t[p] == '\0') {
        tok->kind = GR__TPL_END;
        tok->s = t + p;
        tok->len = 0;
        return;
    }
    if (t[p] == '{' && t[p + 1] == '{') {
        tok->kind = GR__TPL_TEXT;
        tok->s = t + p;
        tok->len = 1;
        *pos = p + 2;
        return;
    }
    if (t[p] == '}' && t[p + 1] == '}') {
        tok->kind = GR__TPL_TEXT;
        tok->s = t + p;
        tok->len = 1;
        *pos = p + 2;
        return;
    }
    if (t[p] == '}') {
        tok->kind = GR__TPL_ERROR;
        tok->why = "unbalanced '}'";
        tok->s = t + p;
        tok->len = 1;
        return;
    }
    if (t[p] == '{') {
        size_t q = p + 1;
        if (is_name_start (t[q])) {
            while (is_name_char (t[q]))
                q++;
        }
        if (t[q] == '}' && q > p + 1) {
            tok->kind = GR__TPL_VAR;
            tok->s = t + p + 1;
            tok->len = q - p - 1;
            *pos = q + 1;
            return;
        }
        tok->kind = GR__TPL_ERROR;
        tok->s = t + p;
        /* Say how far the would-be parameter goes, for the message. */
        while (t[q] != '\0' && t[q] != '}' && t[q] != '{')
            q++;
        if (t[q] == '}') {
            tok->why = "not a parameter name";
            tok->len = q + 1 - p;
        }
        else {
            tok->why = "unbalanced '{'";
            tok->len = 1;
        }
        return;
    }
    tok->kind = GR__TPL_TEXT;
    tok->s = t + p;
    while (t[p] != '\0' && t[p] != '{' && t[p] != '}')
        p++;
    tok->len = p - *pos;
    *pos = p;
}

gr_expand_t *gr_expand_create (void)
{
    return calloc (1, sizeof (gr_expand_t));
}

void gr_expand_destroy (gr_expand_t *x)
{
    if (x) {
        int saved = errno;
        free (x->values);
        free (x->lens);
        free (x->num);
        free (x->name);
        free (x->pstr);
        free (x->arena);
        free (x->offs);
        free (x->ptrs);
        free (x);
        errno = saved;
    }
}

/* Grow *bufp to hold at least need elements of size sz, doubling. */
static int grow (void **bufp, size_t *capp, size_t need, size_t sz)
{
    size_t cap = *capp ? *capp : 16;
    void *nb;

    if (need <= *capp)
        return 0;
    while (cap < need)
        cap *= 2;
    if (!(nb = realloc (*bufp, cap * sz)))
        return -1;
    *bufp = nb;
    *capp = cap;
    return 0;
}

static int grow_values (gr_expand_t *x, size_t n)
{
    size_t cap;
    void *v, *l, *num;

    if (n <= x->vcap)
        return 0;
    cap = x->vcap ? x->vcap : 8;
    while (cap < n)
        cap *= 2;
    /* Each array is reallocated on its own; on failure the ones already
     * grown are merely larger than vcap says, which is harmless. */
    if (!(v = realloc (x->values, cap * sizeof (*x->values))))
        return -1;
    x->values = v;
    if (!(l = realloc (x->lens, cap * sizeof (*x->lens))))
        return -1;
    x->lens = l;
    if (!(num = realloc (x->num, cap * sizeof (*x->num))))
        return -1;
    x->num = num;
    x->vcap = cap;
    return 0;
}

/* Decimal digits of v into buf (at least 21 bytes); returns the length.
 * snprintf would do, but this runs for every task of every range. */
static size_t fmt_i64 (char *buf, int64_t v)
{
    char tmp[24];
    size_t n = 0, len = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        buf[len++] = '-';
    while (n)
        buf[len++] = tmp[--n];
    buf[len] = '\0';
    return len;
}

static size_t fmt_u64 (char *buf, uint64_t u)
{
    char tmp[24];
    size_t n = 0, len = 0;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (n)
        buf[len++] = tmp[--n];
    buf[len] = '\0';
    return len;
}

static void set_value (gr_expand_t *x, size_t i, const gr_param_t *p, uint64_t k)
{
    if (p->kind == GR_PARAM_RANGE) {
        if (p->integral) {
            /* Unsigned arithmetic: the result lies between from and to, so
             * it fits, but the product alone might not in signed terms. */
            int64_t v = (int64_t)((uint64_t)p->ifrom + k * (uint64_t)p->istep);
            x->lens[i] = fmt_i64 (x->num[i], v);
        }
        else {
            /* Computed from the index, never accumulated, so the error of
             * one step does not pile up along the range. */
            double v = p->from + (double)k * p->step;
            /* A point that should be zero comes out as 5.55e-17 after
             * rounding (range [-0.3, 0.3, 0.1]); anything that small next
             * to the step is zero. */
            if (fabs (v) < fabs (p->step) * 1e-9)
                v = 0;
            x->lens[i] = (size_t)snprintf (x->num[i], sizeof (x->num[i]), "%.12g", v);
        }
        x->values[i] = x->num[i];
    }
    else {
        x->values[i] = p->values[k];
        x->lens[i] = strlen (p->values[k]);
    }
}

int gr_expand_select (gr_expand_t *x, const gr_taskdef_t *def, uint64_t index)
{
    /* A definition built by hand, not by the parser, may leave replicas
     * 0: that means one. */
    uint32_t replicas = def && def->replicas > 1 ? def->replicas : 1;
    uint64_t combo;

    if (!x || !def || index >= def->count) {
        errno = EINVAL;
        return -1;
    }
    if (grow_values (x, def->nparams) < 0)
        return -1;
    /* The replicas of a combination are neighbours, so the tasks of one
     * combination are created, and finish, close together. */
    combo = index / replicas;
    if (def->zip) {
        for (size_t i = 0; i < def->nparams; i++)
            set_value (x, i, &def->params[i], combo);
    }
    else {
        /* Mixed-radix decoding with the last param as the least
         * significant digit, so the last param varies fastest. */
        uint64_t rest = combo;
        for (size_t i = def->nparams; i-- > 0;) {
            const gr_param_t *p = &def->params[i];
            set_value (x, i, p, rest % p->count);
            rest /= p->count;
        }
    }
    x->def = def;
    x->index = index;
    x->combo = combo;
    x->replica = (uint32_t)(index % replicas);
    x->selected = true;
    return 0;
}

uint32_t gr_expand_replica (const gr_expand_t *x)
{
    if (!x || !x->selected)
        return 0;
    return x->replica;
}

const char *gr_expand_value (const gr_expand_t *x, size_t i)
{
    if (!x || !x->selected || i >= x->def->nparams)
        return NULL;
    return x->values[i];
}

/* The task key.  It names the task in journals and snapshots, so resuming a
 * run depends on it: the bytes hashed (the definition name, then for each
 * param in declaration order "\0" name "=" value, then for replica r > 0
 * "\0#replica=" r) and gr_hash64 itself must never change.  Replica 0
 * hashes nothing more, so adding replicas to a spec keeps the tasks that
 * already ran.  tests/unit/test_spec.c pins values. */
uint64_t gr_expand_key (const gr_expand_t *x)
{
    const gr_taskdef_t *def;
    uint64_t h = GR_HASH64_INIT;

    if (!x || !x->selected)
        return 0;
    def = x->def;
    h = gr_hash64_update (h, def->name, strlen (def->name));
    for (size_t i = 0; i < def->nparams; i++) {
        const char *pn = def->params[i].name;
        h = gr_hash64_update (h, "\0", 1);
        h = gr_hash64_update (h, pn, strlen (pn));
        h = gr_hash64_update (h, "=", 1);
        h = gr_hash64_update (h, x->values[i], x->lens[i]);
    }
    if (x->replica > 0) {
        char num[24];
        size_t nl = fmt_u64 (num, x->replica);
        h = gr_hash64_update (h, "\0#replica=", 10);
        h = gr_hash64_update (h, num, nl);
    }
    return gr_hash64_final (h);
}

const char *gr_expand_name (gr_expand_t *x)
{
    const gr_taskdef_t *def;
    uint32_t replicas;
    size_t need, len;
    char num[24], rnum[24];

    if (!x || !x->selected)
        return NULL;
    def = x->def;
    replicas = def->replicas > 1 ? def->replicas : 1;
    if (def->count == 1)
        return def->name;
    /* "name", then "[combination]" when there are several, then "#replica"
     * when there are several. */
    size_t numlen = fmt_u64 (num, x->combo);
    size_t rnumlen = fmt_u64 (rnum, x->replica);
    size_t namelen = strlen (def->name);
    need = namelen + numlen + rnumlen + 4;
    if (grow ((void **)&x->name, &x->name_cap, need, 1) < 0)
        return NULL;
    /* By hand, not snprintf: the snapshot writer names every row twice. */
    memcpy (x->name, def->name, namelen);
    len = namelen;
    if (def->count / replicas > 1) {
        x->name[len++] = '[';
        memcpy (x->name + len, num, numlen);
        len += numlen;
        x->name[len++] = ']';
    }
    if (replicas > 1) {
        x->name[len++] = '#';
        memcpy (x->name + len, rnum, rnumlen);
        len += rnumlen;
    }
    x->name[len] = '\0';
    return x->name;
}

static bool needs_quotes (const char *s, size_t len)
{
    if (len == 0)
        return true;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '"' || c == '\'' || c == '\\' || c < 0x20 || c == 0x7f)
            return true;
    }
    return false;
}

const char *gr_expand_params_string (gr_expand_t *x)
{
    const gr_taskdef_t *def;
    size_t need = 1, len = 0;

    if (!x || !x->selected)
        return NULL;
    def = x->def;
    /* The worst case is every byte escaped as \xHH, plus quotes. */
    for (size_t i = 0; i < def->nparams; i++)
        need += strlen (def->params[i].name) + 4 * x->lens[i] + 4;
    if (grow ((void **)&x->pstr, &x->pstr_cap, need, 1) < 0)
        return NULL;
    for (size_t i = 0; i < def->nparams; i++) {
        const char *v = x->values[i];
        size_t vl = x->lens[i];
        size_t nl = strlen (def->params[i].name);

        if (i > 0)
            x->pstr[len++] = ' ';
        memcpy (x->pstr + len, def->params[i].name, nl);
        len += nl;
        x->pstr[len++] = '=';
        if (!needs_quotes (v, vl)) {
            memcpy (x->pstr + len, v, vl);
            len += vl;
            continue;
        }
        x->pstr[len++] = '"';
        for (size_t k = 0; k < vl; k++) {
            unsigned char c = (unsigned char)v[k];
            if (c == '"' || c == '\\') {
                x->pstr[len++] = '\\';
                x->pstr[len++] = (char)c;
            }
            else if (c == '\n') {
                x->pstr[len++] = '\\';
                x->pstr[len++] = 'n';
            }
            else if (c == '\t') {
                x->pstr[len++] = '\\';
                x->pstr[len++] = 't';
            }
            else if (c < 0x20 || c == 0x7f) {
                len += (size_t)snprintf (x->pstr + len, 5, "\\x%02x", c);
            }
            else
                x->pstr[len++] = (char)c;
        }
        x->pstr[len++] = '"';
    }
    x->pstr[len] = '\0';
    return x->pstr;
}

/* Append n bytes to the string that starts at arena offset start, refusing
 * to let it pass GR_SPEC_MAX_STRING so that a template that repeats a long
 * value cannot blow up memory. */
static int arena_put (gr_expand_t *x, size_t start, const char *s, size_t n)
{
    if (x->arena_len - start + n > GR_SPEC_MAX_STRING) {
        errno = E2BIG;
        return -1;
    }
    if (grow ((void **)&x->arena, &x->arena_cap, x->arena_len + n + 1, 1) < 0)
        return -1;
    memcpy (x->arena + x->arena_len, s, n);
    x->arena_len += n;
    return 0;
}

/* Append s single-quoted for /bin/sh: inside single quotes nothing is
 * special, and a quote itself is written as '\'' (close, escaped quote,
 * reopen). */
static int arena_put_quoted (gr_expand_t *x, size_t start, const char *s, size_t n)
{
    size_t from = 0;

    if (arena_put (x, start, "'", 1) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\'') {
            if (arena_put (x, start, s + from, i - from) < 0
                || arena_put (x, start, "'\\''", 4) < 0)
                return -1;
            from = i + 1;
        }
    }
    if (arena_put (x, start, s + from, n - from) < 0 || arena_put (x, start, "'", 1) < 0)
        return -1;
    return 0;
}

static int put_string (gr_expand_t *x, size_t *slot, const char *s)
{
    size_t start = x->arena_len;

    if (arena_put (x, start, s, strlen (s)) < 0 || arena_put (x, start, "", 1) < 0)
        return -1;
    *slot = start;
    return 0;
}

/* What a template is, for messages: "argument 2" for argv elements.  Only
 * the error paths format it, so rendering stays free of snprintf. */
static const char *describe_what (char label[48], const char *what, long argi)
{
    if (argi < 0)
        return what;
    snprintf (label, 48, "%s %ld", what, argi);
    return label;
}

/* Render template t as one string into the arena.  Templates were checked
 * when the spec was loaded, so a malformed one here means the spec was
 * changed behind our back; it is still refused rather than guessed at. */
static int put_template (gr_expand_t *x, const gr_render_ctx_t *ctx, const char *t,
                         bool quote, size_t *slot, const char *what, long argi,
                         gr_error_t *errp)
{
    const gr_taskdef_t *def = x->def;
    size_t start = x->arena_len;
    size_t pos = 0;
    gr__tpl_tok_t tok;
    char num[24];
    char label[48];

    for (;;) {
        const char *v = NULL;
        size_t vl = 0;

        gr__tpl_next (t, &pos, &tok);
        if (tok.kind == GR__TPL_END)
            break;
        if (tok.kind == GR__TPL_ERROR) {
            errno = EINVAL;
            return gr_errprintf (errp, "task '%s': %s in the %s template '%s'",
                                 def->name, tok.why, describe_what (label, what, argi), t);
        }
        if (tok.kind == GR__TPL_TEXT) {
            if (arena_put (x, start, tok.s, tok.len) < 0)
                goto fail;
            continue;
        }
        for (size_t i = 0; i < def->nparams; i++) {
            const char *pn = def->params[i].name;
            if (strncmp (pn, tok.s, tok.len) == 0 && pn[tok.len] == '\0') {
                v = x->values[i];
                vl = x->lens[i];
                break;
            }
        }
        if (!v) {
            switch (gr__tpl_builtin (tok.s, tok.len)) {
                case GR__BUILTIN_TASK:
                    v = def->name;
                    break;
                case GR__BUILTIN_INDEX:
                    fmt_u64 (num, x->index);
                    v = num;
                    break;
                case GR__BUILTIN_ATTEMPT:
                    fmt_u64 (num, ctx ? ctx->attempt : 1);
                    v = num;
                    break;
                case GR__BUILTIN_RUN_DIR:
                    v = ctx && ctx->run_dir ? ctx->run_dir : ".";
                    break;
                case GR__BUILTIN_REPLICA:
                    fmt_u64 (num, x->replica);
                    v = num;
                    break;
                default:
                    errno = EINVAL;
                    return gr_errprintf (errp,
                                         "task '%s': undefined template parameter "
                                         "'{%.*s}' in the %s template",
                                         def->name, (int)tok.len, tok.s,
                                         describe_what (label, what, argi));
            }
            vl = strlen (v);
        }
        if ((quote ? arena_put_quoted (x, start, v, vl) : arena_put (x, start, v, vl)) < 0)
            goto fail;
    }
    if (arena_put (x, start, "", 1) < 0)
        goto fail;
    *slot = start;
    return 0;
fail:
    if (errno == E2BIG) {
        return gr_errprintf (errp,
                             "task '%s[%" PRIu64 "]': the expanded %s is longer than "
                             "%u bytes (GR_SPEC_MAX_STRING); shorten the parameter "
                             "values or the template",
                             def->name, x->index, describe_what (label, what, argi),
                             GR_SPEC_MAX_STRING);
    }
    return gr_errprintf (errp, "task '%s': out of memory rendering the %s", def->name,
                         what);
}

int gr_expand_render (gr_expand_t *x, const gr_render_ctx_t *ctx, gr_task_cmd_t *cmd,
                      gr_error_t *errp)
{
    const gr_taskdef_t *def;
    size_t nargv, nstr, k = 0;
    size_t cwd_slot = 0, out_slot = 0, err_slot = 0, ckpt_slot = 0;

    if (!x || !x->selected || !cmd) {
        errno = EINVAL;
        return gr_errprintf (errp, "gr_expand_render: no task selected");
    }
    def = x->def;
    nargv = def->builtin != GR_BUILTIN_NONE ? 0 : def->shell ? 3 : def->argc;
    nstr = nargv + def->nenv + 3;
    if (grow ((void **)&x->offs, &x->offs_cap, nstr, sizeof (size_t)) < 0
        || grow ((void **)&x->ptrs, &x->ptrs_cap, nargv + def->nenv + 2, sizeof (char *))
               < 0)
        goto nomem;
    x->arena_len = 0;

    if (def->builtin == GR_BUILTIN_NONE && def->shell) {
        if (put_string (x, &x->offs[k++], "/bin/sh") < 0
            || put_string (x, &x->offs[k++], "-c") < 0)
            goto nomem;
        if (put_template (x, ctx, def->shell, true, &x->offs[k++], "shell command", -1,
                          errp)
            < 0)
            return -1;
    }
    else if (def->builtin == GR_BUILTIN_NONE) {
        for (size_t i = 0; i < def->argc; i++) {
            if (put_template (x, ctx, def->argv[i], false, &x->offs[k++], "argument",
                              (long)i, errp)
                < 0)
                return -1;
        }
    }
    for (size_t i = 0; i < def->nenv; i++) {
        if (put_template (x, ctx, def->env[i], false, &x->offs[k++], "env", -1, errp) < 0)
            return -1;
    }
    if (def->cwd && put_template (x, ctx, def->cwd, false, &cwd_slot, "cwd", -1, errp) < 0)
        return -1;
    if (def->out_mode == GR_OUT_FILE && def->out_path
        && put_template (x, ctx, def->out_path, false, &out_slot, "stdout path", -1,
                         errp) < 0)
        return -1;
    if (def->err_mode == GR_OUT_FILE && def->err_path
        && put_template (x, ctx, def->err_path, false, &err_slot, "stderr path", -1,
                         errp) < 0)
        return -1;

    if (def->group && def->ckpt_dir
        && put_template (x, ctx, def->ckpt_dir, false, &ckpt_slot, "checkpoint_dir", -1,
                         errp) < 0)
        return -1;

    /* The arena no longer moves: turn offsets into pointers. */
    k = 0;
    if (def->builtin != GR_BUILTIN_NONE) {
        cmd->argv = NULL;
        cmd->env = x->ptrs;
    }
    else {
        for (size_t i = 0; i < nargv; i++)
            x->ptrs[i] = x->arena + x->offs[k++];
        x->ptrs[nargv] = NULL;
        cmd->argv = x->ptrs;
        cmd->env = x->ptrs + nargv + 1;
    }
    for (size_t i = 0; i < def->nenv; i++)
        cmd->env[i] = x->arena + x->offs[k++];
    cmd->env[def->nenv] = NULL;
    cmd->cwd = def->cwd ? x->arena + cwd_slot : NULL;
    cmd->out_path = def->out_mode == GR_OUT_FILE && def->out_path ? x->arena + out_slot
                                                                  : NULL;
    cmd->err_path = def->err_mode == GR_OUT_FILE && def->err_path ? x->arena + err_slot
                                                                  : NULL;
    cmd->ckpt_dir = def->group && def->ckpt_dir ? x->arena + ckpt_slot : NULL;
    return 0;
nomem:
    return gr_errprintf (errp, "task '%s': out of memory rendering its command",
                         def->name);
}

char *gr_shell_quote (const char *s)
{
    size_t n = 3;
    char *q, *p;

    if (!s) {
        errno = EINVAL;
        return NULL;
    }
    for (const char *c = s; *c; c++)
        n += *c == '\'' ? 4 : 1;
    if (!(q = malloc (n)))
        return NULL;
    p = q;
    *p++ = '\'';
    for (const char *c = s; *c; c++) {
        if (*c == '\'') {
            memcpy (p, "'\\''", 4);
            p += 4;
        }
        else
            *p++ = *c;
    }
    *p++ = '\'';
    *p = '\0';
    return q;
}
