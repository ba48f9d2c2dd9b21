/* The YAML parse tree shared by the job spec and site file parsers; see
 * ytree.h.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "src/common/error.h"
#include "ytree.h"

/* ------------------------------------------------------------------ */
/* Arena for the parse tree. */

#define ARENA_BLOCK (64 * 1024)

typedef struct gr__yblock {
    struct gr__yblock *next;
    size_t used, cap;
    max_align_t data[];
} yblock_t;

static void *arena_alloc (gr__yparse_t *p, size_t n)
{
    yblock_t *b = p->arena;
    void *m;

    n = (n + 15) & ~(size_t)15;
    if (!b || b->cap - b->used < n) {
        bool big = n > ARENA_BLOCK / 4;
        size_t cap = big ? n : ARENA_BLOCK;
        if (!(b = malloc (sizeof (*b) + cap)))
            return NULL;
        b->used = 0;
        b->cap = cap;
        /* A big dedicated block goes behind the head so the head's free
         * space stays in use. */
        if (big && p->arena) {
            b->next = p->arena->next;
            p->arena->next = b;
        }
        else {
            b->next = p->arena;
            p->arena = b;
        }
    }
    m = (char *)b->data + b->used;
    b->used += n;
    return m;
}

void gr__yfree (gr__yparse_t *p)
{
    while (p->arena) {
        yblock_t *next = p->arena->next;
        free (p->arena);
        p->arena = next;
    }
    p->root = NULL;
    p->nnodes = 0;
}

/* ------------------------------------------------------------------ */
/* Errors. */

int gr__yerr_at (gr__yparse_t *p, int line, int col, const char *fmt, ...)
{
    char buf[GR_ERROR_TEXT_MAX];
    va_list ap;

    va_start (ap, fmt);
    vsnprintf (buf, sizeof (buf), fmt, ap);
    va_end (ap);
    gr_errprintf_at (p->errp, p->file, line, col, "%s", buf);
    errno = EINVAL;
    return -1;
}

int gr__yerr (gr__yparse_t *p, const gr__ynode_t *n, const char *fmt, ...)
{
    char buf[GR_ERROR_TEXT_MAX];
    va_list ap;

    va_start (ap, fmt);
    vsnprintf (buf, sizeof (buf), fmt, ap);
    va_end (ap);
    return gr__yerr_at (p, n ? n->mark.line : 1, n ? n->mark.col : 1, "%s", buf);
}

int gr__ynomem (gr__yparse_t *p)
{
    errno = ENOMEM;
    return gr_errprintf (p->errp, "%s: out of memory", p->file);
}

size_t gr__yutf8_chars (const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            k++;
    }
    return k;
}

/* The character at 1-based line and column of the text, or NUL. */
static char char_at (const char *text, size_t len, int line, int col)
{
    size_t i = 0;

    for (int l = 1; l < line && i < len; i++) {
        if (text[i] == '\n')
            l++;
    }
    for (int k = 1; i < len && text[i] != '\n'; i++) {
        if (((unsigned char)text[i] & 0xc0) == 0x80)
            continue;
        if (k++ == col)
            return text[i];
    }
    return '\0';
}

/* libyaml's problem and context in our words, with a hint drawn from the
 * problem or from the character it stopped at. */
static int yaml_error (gr__yparse_t *p, const yaml_parser_t *yp)
{
    int line, col;
    const char *hint = "check the indentation and quoting near this point";
    char ctx[256] = "";

    if (yp->error == YAML_MEMORY_ERROR)
        return gr__ynomem (p);
    if (yp->error == YAML_READER_ERROR) {
        /* Reader errors carry a byte offset, not a mark. */
        line = 1;
        col = 1;
        for (size_t i = 0; i < yp->problem_offset && i < p->len; i++) {
            if (p->text[i] == '\n') {
                line++;
                col = 1;
            }
            else if (((unsigned char)p->text[i] & 0xc0) != 0x80)
                col++;
        }
        return gr__yerr_at (p, line, col,
                            "YAML cannot read the file: %s (byte 0x%02x); a %s must be "
                            "UTF-8 text without control characters",
                            yp->problem ? yp->problem : "invalid input",
                            (unsigned)(yp->problem_value & 0xff), p->doc->noun);
    }
    line = (int)yp->problem_mark.line + 1;
    col = (int)yp->problem_mark.column + 1;
    if (char_at (p->text, p->len, line, col) == '\t')
        hint = p->doc->tab_hint;
    else if (yp->problem && strstr (yp->problem, "mapping values are not allowed"))
        hint = "quote values that contain ': ' (for example \"echo a: b\"), and check "
               "the indentation";
    else if (yp->problem && strstr (yp->problem, "cannot start any token"))
        hint = "quote values that start with '`', '@' or '%'; indent with spaces, not "
               "tabs";
    else if (yp->problem && strstr (yp->problem, "did not find expected"))
        hint = "check the indentation: keys of one mapping must line up, and list "
               "items start with '- '";
    if (yp->context)
        snprintf (ctx, sizeof (ctx), " %s at line %d, column %d", yp->context,
                  (int)yp->context_mark.line + 1, (int)yp->context_mark.column + 1);
    return gr__yerr_at (p, line, col, "YAML syntax error: %s%s; %s",
                        yp->problem ? yp->problem : "unknown problem", ctx, hint);
}

/* ------------------------------------------------------------------ */
/* Building the tree. */

static int keys_cmp (const void *a, const void *b)
{
    const gr__ynode_t *x = *(gr__ynode_t *const *)a, *y = *(gr__ynode_t *const *)b;
    int r;

    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    if ((r = memcmp (x->str, y->str, x->len)) != 0)
        return r;
    if (x->mark.line != y->mark.line)
        return x->mark.line < y->mark.line ? -1 : 1;
    return x->mark.col < y->mark.col ? -1 : x->mark.col > y->mark.col;
}

/* libyaml accepts a key twice and the document API would keep both; a
 * file with two timeouts is a mistake worth stopping for.  Sorting keeps
 * a mapping of many keys from costing quadratic time. */
static int check_duplicate_keys (gr__yparse_t *p, const gr__ynode_t *map)
{
    size_t npairs = map->n / 2, k = 0;
    const gr__ynode_t **keys;
    int rc = 0;

    if (npairs < 2)
        return 0;
    if (!(keys = malloc (npairs * sizeof (*keys))))
        return gr__ynomem (p);
    for (const gr__ynode_t *n = map->first; n; n = n->next->next)
        keys[k++] = n;
    qsort (keys, npairs, sizeof (*keys), keys_cmp);
    for (k = 1; k < npairs; k++) {
        if (keys[k]->len == keys[k - 1]->len
            && memcmp (keys[k]->str, keys[k - 1]->str, keys[k]->len) == 0) {
            rc = gr__yerr (p, keys[k], "duplicate key '%s' (first at line %d); remove one "
                                       "of them",
                           keys[k]->str, keys[k - 1]->mark.line);
            break;
        }
    }
    free (keys);
    return rc;
}

static gr__ynode_t *new_node (gr__yparse_t *p, gr__ytype_t type, const yaml_mark_t *m)
{
    gr__ynode_t *n;

    if (++p->nnodes > p->doc->max_nodes) {
        gr__yerr_at (p, (int)m->line + 1, (int)m->column + 1,
                     "the %s holds more than %zu YAML values; %s", p->doc->noun,
                     p->doc->max_nodes, p->doc->nodes_hint);
        return NULL;
    }
    if (!(n = arena_alloc (p, sizeof (*n)))) {
        gr__ynomem (p);
        return NULL;
    }
    memset (n, 0, sizeof (*n));
    n->type = type;
    n->coloff = -1;
    n->mark.line = (int)m->line + 1;
    n->mark.col = (int)m->column + 1;
    return n;
}

/* A scalar node for ev. */
static gr__ynode_t *new_scalar (gr__yparse_t *p, const yaml_event_t *ev)
{
    size_t vlen = ev->data.scalar.length;
    yaml_scalar_style_t style = ev->data.scalar.style;
    size_t chars, span;
    gr__ynode_t *n;

    if (!(n = new_node (p, GR__YSCALAR, &ev->start_mark)))
        return NULL;
    if (!(n->str = arena_alloc (p, vlen + 1))) {
        gr__ynomem (p);
        return NULL;
    }
    memcpy (n->str, ev->data.scalar.value, vlen);
    n->str[vlen] = '\0';
    n->len = vlen;
    n->plain = style == YAML_PLAIN_SCALAR_STYLE;
    /* When the source span is exactly the value (plus quotes), byte
     * offsets in the value map to columns. */
    chars = gr__yutf8_chars (n->str, vlen);
    span = ev->end_mark.index - ev->start_mark.index;
    if (ev->end_mark.line == ev->start_mark.line) {
        if (n->plain && span == chars)
            n->coloff = 0;
        else if ((style == YAML_SINGLE_QUOTED_SCALAR_STYLE
                  || style == YAML_DOUBLE_QUOTED_SCALAR_STYLE)
                 && span == chars + 2)
            n->coloff = 1;
    }
    return n;
}

int gr__ybuild (gr__yparse_t *p, const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    bool have_ev = false, done = false;
    gr__ynode_t **stack;
    int depth = 0, ndocs = 0;

    p->text = text;
    p->len = len;
    /* The stack of open lists and mappings lives as long as the tree. */
    if (!(stack = arena_alloc (p, (size_t)p->doc->max_depth * sizeof (*stack))))
        return gr__ynomem (p);
    if (!yaml_parser_initialize (&parser))
        return gr__ynomem (p);
    yaml_parser_set_input_string (&parser, (const unsigned char *)text, len);
    while (!done) {
        gr__ynode_t *n = NULL;

        if (!yaml_parser_parse (&parser, &ev)) {
            yaml_error (p, &parser);
            goto error;
        }
        have_ev = true;
        switch (ev.type) {
            case YAML_STREAM_END_EVENT:
                done = true;
                break;
            case YAML_DOCUMENT_START_EVENT:
                if (ndocs++ > 0) {
                    gr__yerr_at (p, (int)ev.start_mark.line + 1,
                                 (int)ev.start_mark.column + 1,
                                 "a second YAML document; a %s is one document, so "
                                 "remove this '---' and what follows or merge it into "
                                 "the first",
                                 p->doc->noun);
                    goto error;
                }
                break;
            case YAML_ALIAS_EVENT:
                gr__yerr_at (p, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
                             "YAML aliases (*%s) are not supported; write the value out%s",
                             (const char *)ev.data.alias.anchor, p->doc->alias_hint);
                goto error;
            case YAML_SCALAR_EVENT:
                if (!(n = new_scalar (p, &ev)))
                    goto error;
                break;
            case YAML_SEQUENCE_START_EVENT:
                if (!(n = new_node (p, GR__YSEQ, &ev.start_mark)))
                    goto error;
                break;
            case YAML_MAPPING_START_EVENT:
                if (!(n = new_node (p, GR__YMAP, &ev.start_mark)))
                    goto error;
                break;
            case YAML_SEQUENCE_END_EVENT:
            case YAML_MAPPING_END_EVENT:
                if (depth > 0) {
                    gr__ynode_t *top = stack[--depth];
                    if (top->type == GR__YMAP && check_duplicate_keys (p, top) < 0)
                        goto error;
                }
                break;
            default:
                break;
        }
        if (n) {
            if (depth > 0) {
                gr__ynode_t *parent = stack[depth - 1];
                if (parent->type == GR__YMAP && parent->n % 2 == 0
                    && n->type != GR__YSCALAR) {
                    gr__yerr (p, n, "a mapping key must be a plain string, not %s; quote "
                                    "it or restructure the mapping",
                              gr__ykind (n));
                    goto error;
                }
                if (parent->last)
                    parent->last->next = n;
                else
                    parent->first = n;
                parent->last = n;
                parent->n++;
            }
            else
                p->root = n;
            if (n->type != GR__YSCALAR) {
                if (depth == p->doc->max_depth) {
                    gr__yerr (p, n, "the YAML nests deeper than %d levels; a %s never "
                                    "needs that much, so check the brackets and "
                                    "indentation",
                              p->doc->max_depth, p->doc->noun);
                    goto error;
                }
                stack[depth++] = n;
            }
        }
        yaml_event_delete (&ev);
        have_ev = false;
    }
    yaml_parser_delete (&parser);
    return 0;
error:
    if (have_ev)
        yaml_event_delete (&ev);
    yaml_parser_delete (&parser);
    return -1;
}

/* ------------------------------------------------------------------ */
/* Helpers over the tree. */

gr__ynode_t *gr__ymap_get (const gr__ynode_t *map, const char *key, gr__ynode_t **keyp)
{
    if (!map || map->type != GR__YMAP)
        return NULL;
    for (gr__ynode_t *k = map->first; k; k = k->next->next) {
        if (strcmp (k->str, key) == 0 && strlen (key) == k->len) {
            if (keyp)
                *keyp = k;
            return k->next;
        }
    }
    return NULL;
}

static size_t edit_distance (const char *a, const char *b)
{
    size_t la = strlen (a), lb = strlen (b);
    size_t row[65];

    if (la > 64 || lb > 64)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *gr__ysuggest (const char *s, const char *const *words, size_t nwords)
{
    const char *best = NULL;
    size_t bestd = 3;

    for (size_t i = 0; i < nwords; i++) {
        size_t d = edit_distance (s, words[i]);
        if (d < bestd) {
            bestd = d;
            best = words[i];
        }
    }
    return best;
}

int gr__ycheck_keys (gr__yparse_t *p, const gr__ynode_t *map, const char *const *valid,
                     const char *where)
{
    size_t nvalid = 0;

    while (valid[nvalid])
        nvalid++;
    for (const gr__ynode_t *k = map->first; k; k = k->next->next) {
        const char *hint;
        char list[512];
        size_t len = 0;
        bool ok = false;

        for (size_t i = 0; i < nvalid; i++) {
            if (strcmp (k->str, valid[i]) == 0) {
                ok = true;
                break;
            }
        }
        if (ok)
            continue;
        if ((hint = gr__ysuggest (k->str, valid, nvalid)))
            return gr__yerr (p, k, "unknown key '%s' in %s; did you mean '%s'?", k->str,
                             where, hint);
        list[0] = '\0';
        for (size_t i = 0; i < nvalid && len < sizeof (list); i++)
            len += (size_t)snprintf (list + len, sizeof (list) - len, "%s%s",
                                     i ? ", " : "", valid[i]);
        return gr__yerr (p, k, "unknown key '%s' in %s; the keys here are %s", k->str,
                         where, list);
    }
    return 0;
}

bool gr__yis_null (const gr__ynode_t *n)
{
    return n->type == GR__YSCALAR && n->plain
           && (n->len == 0 || strcmp (n->str, "~") == 0 || strcmp (n->str, "null") == 0
               || strcmp (n->str, "Null") == 0 || strcmp (n->str, "NULL") == 0);
}

const char *gr__ykind (const gr__ynode_t *n)
{
    return n->type == GR__YSEQ   ? "a list"
           : n->type == GR__YMAP ? "a mapping"
                                 : "a string";
}

const char *gr__ydescribe (const gr__ynode_t *n, char *buf, size_t size)
{
    if (n->type != GR__YSCALAR)
        return gr__ykind (n);
    if (n->plain && n->len == 0)
        return "nothing";
    if (n->len > 40)
        snprintf (buf, size, "'%.37s...'", n->str);
    else
        snprintf (buf, size, "'%s'", n->str);
    return buf;
}

/* An unquoted "{x}" is a mapping to YAML, a slip common enough to name. */
int gr__ywant_string (gr__yparse_t *p, const gr__ynode_t *n, const char *what)
{
    if (n->type == GR__YMAP)
        return gr__yerr (p, n,
                         "%s: expected a string, got a mapping; a value that starts with "
                         "'{' must be quoted in YAML, e.g. \"{x}\"",
                         what);
    if (n->type != GR__YSCALAR)
        return gr__yerr (p, n, "%s: expected a string, got %s; write a single value", what,
                         gr__ykind (n));
    if (gr__yis_null (n))
        return gr__yerr (p, n, "%s: has no value; give it one or leave the key out", what);
    if (strlen (n->str) != n->len)
        return gr__yerr (p, n, "%s: contains a NUL character; remove it", what);
    if (n->len > p->doc->max_string)
        return gr__yerr (p, n, "%s: is %zu bytes, over the limit of %zu%s; shorten it",
                         what, n->len, p->doc->max_string, p->doc->max_string_name);
    return 0;
}

int gr__ywant (gr__yparse_t *p, const gr__ynode_t *n, gr__ytype_t type, const char *what,
               const char *example)
{
    if (n->type == type)
        return 0;
    return gr__yerr (p, n, "%s: expected %s, got %s; write it like %s", what,
                     type == GR__YSEQ ? "a list" : "a mapping",
                     gr__yis_null (n) ? "nothing" : gr__ykind (n), example);
}
